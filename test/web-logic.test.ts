/**
 * The dashboard's plain-TypeScript logic, without a browser: how the run page merges the event
 * stream with fetched runs (web/src/run-live.ts) and the revisions diff (web/src/revision-diff.ts).
 * These modules import nothing, so the root tsconfig compiles them with the tests.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { mergeFetched, mergeStage, runStreamAction, type StageEventData } from '../web/src/run-live.js';
import { revisionDiff } from '../web/src/revision-diff.js';

type Status = StageEventData['stage']['status'];
const run = (status: string, stages: Array<[string, Status]>, id = 'r1') => ({ id, status, stages: stages.map(([name, s]) => ({ name, status: s, type: 'wait' })) });
const frame = (type: string, data: unknown) => JSON.stringify({ id: '1', type, data });
const stageData = (name: string, status: Status, number = 3): StageEventData => ({ run: { id: 'r1', pipeline: 'release', number }, stage: { name, status } });

describe('run page live merge', () => {
  test('a frame of this run: stage events merge, run events fetch, others are ignored', () => {
    assert.equal(runStreamAction(frame('stage.succeeded', stageData('pause', 'succeeded')), 'release', '3').kind, 'stage');
    assert.deepEqual(runStreamAction(frame('run.waiting', { run: { pipeline: 'release', number: 3 } }), 'release', 3), { kind: 'refetch' });
    assert.equal(runStreamAction(frame('stage.started', stageData('pause', 'running', 4)), 'release', 3).kind, 'none', 'another run');
    assert.equal(runStreamAction(frame('run.started', { run: { pipeline: 'other', number: 3 } }), 'release', 3).kind, 'none', 'another pipeline');
    assert.equal(runStreamAction(frame('deploy.succeeded', { name: 'web' }), 'release', 3).kind, 'none');
    assert.equal(runStreamAction(': keep-alive', 'release', 3).kind, 'none', 'not JSON');
  });

  test('a stage moves forward, never back; a starting stage makes a waiting run run', () => {
    const waiting = run('waiting', [['pause', 'succeeded'], ['gate', 'waiting'], ['ship', 'pending']]);
    const started = mergeStage(waiting, stageData('ship', 'running'));
    assert.equal(started.status, 'running');
    assert.deepEqual(started.stages.map((s) => s.status), ['succeeded', 'waiting', 'running']);
    assert.equal(started.stages[2]!.type, 'wait', 'fields the event lacks are kept');
    assert.equal(mergeStage(started, stageData('pause', 'running')), started, 'a late "started" of an ended stage changes nothing');
    assert.equal(mergeStage(started, stageData('nope', 'running')), started, 'an unknown stage changes nothing');
    assert.equal(waiting.stages[2]!.status, 'pending', 'the old run is left as it was');
  });

  test('a fetched run that answers late keeps the stages the stream moved further', () => {
    const live = run('running', [['pause', 'succeeded'], ['gate', 'waiting']]);
    const stale = run('running', [['pause', 'running'], ['gate', 'pending']]);
    assert.deepEqual(mergeFetched(live, stale).stages.map((s) => s.status), ['succeeded', 'waiting']);
    const fresher = run('succeeded', [['pause', 'succeeded'], ['gate', 'succeeded']]);
    assert.equal(mergeFetched(live, fresher).status, 'succeeded');
    assert.deepEqual(mergeFetched(live, fresher).stages.map((s) => s.status), ['succeeded', 'succeeded']);
    const other = run('queued', [['pause', 'pending']], 'r2');
    assert.equal(mergeFetched(live, other), other, 'another run (a re-run) replaces it');
    assert.equal(mergeFetched(null, other), other);
  });
});

describe('revisions diff', () => {
  test('changed, added and removed fields; the revision\'s own fields are no difference', () => {
    const one = { number: 1, active: false, createdAt: 'a', image: 'team/web:1', env: { VERSION: 'v1' }, memory: 128 };
    const two = { number: 2, active: true, createdAt: 'b', readyAt: 'c', image: 'team/web:1', env: { VERSION: 'v2' }, timeout: '5s' };
    assert.deepEqual(revisionDiff(one, two), [
      { key: 'env', a: '{"VERSION":"v1"}', b: '{"VERSION":"v2"}' },
      { key: 'memory', a: '128', b: 'undefined' },
      { key: 'timeout', a: 'undefined', b: '"5s"' },
    ]);
    assert.deepEqual(revisionDiff(one, { ...one, number: 9, output: ['log'] }), []);
  });
});
