/**
 * A run: the stage graph (parallel groups side by side) kept live, each stage's log streamed,
 * and the buttons the API offers (cancel, approve/reject with a comment, re-run from a stage).
 * It follows the namespace event stream: `stage.*` events move one stage, `run.*` events fetch
 * the run again, and so does every (re)connect of the stream (what passed while it was down).
 */
import { useEffect, useRef, useState } from 'react';
import { Link, useNavigate, useParams } from 'react-router-dom';
import { followSse, type StreamState } from '../api/http.js';
import { api, type RunView, type StageState } from '../api/resources.js';
import { useLogStream } from '../live.js';
import { mergeFetched, mergeStage, runStreamAction } from '../run-live.js';
import { atLeast, useRole } from '../session.js';
import { ConnectionBanner, duration, ErrorBox, shortDigest, Status, Time, useLoad } from '../ui.js';

const finalStatuses = new Set(['succeeded', 'failed', 'cancelled']);

export default function Run() {
  const { ns = '', name = '', number = '' } = useParams();
  const role = useRole(ns);
  const navigate = useNavigate();
  const [run, setRun] = useState<RunView | null>(null);
  const [error, setError] = useState<unknown>(undefined);
  const [actionError, setActionError] = useState<unknown>(undefined);
  const [comment, setComment] = useState('');
  const [selected, setSelected] = useState<string | null>(null);
  const [tick, setTick] = useState(0);
  const base = `/ns/${encodeURIComponent(ns)}/pipelines/${encodeURIComponent(name)}`;

  // Only the newest fetch is applied: an older answer arriving late would step the run back.
  const fetches = useRef(0);
  useEffect(() => {
    const mine = ++fetches.current;
    api.run(ns, name, number).then((r) => { if (fetches.current === mine) { setRun((old) => mergeFetched(old, r)); setError(undefined); } }, (e) => { if (fetches.current === mine) setError(e); });
  }, [ns, name, number, tick]);

  const active = run ? !finalStatuses.has(run.status) : true;
  const [streamState, setStreamState] = useState<StreamState>('connecting');
  useEffect(() => {
    let stop = () => {};
    let live = true;
    let opened = 0;
    const types = 'run.*,stage.*';
    // Resume after the newest stored event (the stream replays what follows it), then fetch the
    // run once more: together nothing that happens from here on is missed.
    void api.events(ns, 1, types).catch(() => []).then((newest) => {
      if (!live) return;
      setTick((t) => t + 1);
      stop = followSse(`${api.eventStreamPath(ns)}?type=${encodeURIComponent(types)}`, {
        lastEventId: newest.at(-1)?.id,
        onEvent: (frame) => {
          const action = runStreamAction(frame.data, name, number);
          if (action.kind === 'stage') setRun((old) => (old ? mergeStage(old, action.data) : old));
          else if (action.kind === 'refetch') setTick((t) => t + 1);
        },
        // The stream replays what it missed; a reconnect also fetches the run, to be safe.
        onState: (state) => { setStreamState(state); if (state === 'open' && opened++ > 0) setTick((t) => t + 1); },
      });
    });
    return () => { live = false; stop(); };
  }, [ns, name, number]);

  // A waiting run's log stream ends; it starts again when the run moves on.
  const log = useLogStream(run ? api.runLogPath(ns, name, number) : null, run?.status === 'waiting' ? 'waiting' : 'moving');

  const act = async (action: () => Promise<RunView>, go = false) => {
    setActionError(undefined);
    try {
      const next = await action();
      if (go && next.number !== run?.number) navigate(`${base}/runs/${next.number}`); else setRun((old) => mergeFetched(old, next));
    } catch (e) { setActionError(e); }
  };

  if (error && !run) return <ErrorBox error={error} />;
  if (!run) return <p className="muted">Loading…</p>;
  const groups = new Map<number, StageState[]>();
  run.stages?.forEach((s, i) => { const g = s.group ?? i; groups.set(g, [...(groups.get(g) ?? []), s]); });
  const waiting = run.stages?.filter((s) => s.status === 'waiting') ?? [];
  const failed = run.stages?.find((s) => s.status === 'failed');
  const canAct = atLeast(role, 'contributor');
  const shown = selected ?? run.stages?.find((s) => s.status === 'running')?.name ?? null;
  const stageLines = shown ? log.lines.filter((l) => l.includes(`[${shown}]`) || l.startsWith(`${shown}:`) || l.startsWith(`${shown} `)) : log.lines;

  return (
    <section>
      <p className="crumbs"><Link to="/">Home</Link> / <Link to={`/ns/${encodeURIComponent(ns)}/pipelines`}>{ns}</Link> / <Link to={base}>{name}</Link> / #{run.number}</p>
      <h1>Run #{run.number} <Status value={run.status} /></h1>
      <dl className="facts">
        <dt>Trigger</dt><dd>{String(run.trigger?.type ?? '')}{run.trigger?.by ? ` by ${String(run.trigger.by)}` : ''}</dd>
        <dt>Commit</dt><dd><code>{run.commit ?? '—'}</code> {run.ref ? `(${String(run.ref)})` : ''}</dd>
        <dt>Created</dt><dd><Time value={run.createdAt} /></dd>
        <dt>Duration</dt><dd>{duration(run.durationMs as number | null)}</dd>
        {Object.keys(run.parameters ?? {}).length > 0 && <><dt>Parameters</dt><dd>{Object.entries(run.parameters ?? {}).map(([k, v]) => `${k}=${v}`).join(', ')}</dd></>}
        {run.error && <><dt>Error</dt><dd className="error">{run.error}</dd></>}
      </dl>
      <ErrorBox error={actionError} />
      {canAct && (
        <div className="actions">
          {active && <button type="button" className="danger" onClick={() => act(() => api.cancelRun(ns, name, run.number))}>Cancel run</button>}
          {waiting.length > 0 && <>
            <input aria-label="Comment" placeholder="comment" value={comment} onChange={(e) => setComment(e.target.value)} />
            {waiting.map((s) => <span key={s.name}>
              <button type="button" onClick={() => act(() => api.decide(ns, name, run.number, s.name, 'approve', comment))}>Approve {s.name}</button>
              <button type="button" className="danger" onClick={() => act(() => api.decide(ns, name, run.number, s.name, 'reject', comment))}>Reject {s.name}</button>
            </span>)}
          </>}
          {!active && failed && <button type="button" onClick={() => act(() => api.rerun(ns, name, run.number, { fromStage: failed.name }), true)}>Re-run from {failed.name}</button>}
          {!active && <button type="button" onClick={() => act(() => api.rerun(ns, name, run.number, {}), true)}>Re-run</button>}
        </div>
      )}
      <h2>Stages</h2>
      <div className="graph" data-testid="stage-graph">
        {[...groups.entries()].sort(([a], [b]) => a - b).map(([group, stages]) => (
          <div className="group" key={group}>
            {stages.map((s) => (
              <button type="button" key={s.name} className={`stage stage-${s.status}${shown === s.name ? ' selected' : ''}`} data-stage={s.name} data-status={s.status} onClick={() => setSelected(s.name === selected ? null : s.name)}>
                <b>{s.name}</b><span>{s.type}</span><Status value={s.status} /><span className="muted">{duration((s as { durationMs?: number }).durationMs)}</span>
                {typeof s.message === 'string' && s.message && <span className="muted small">{s.message}</span>}
              </button>
            ))}
          </div>
        ))}
      </div>
      {(run.artifacts ?? []).length > 0 && <>
        <h2>Delivered artefacts</h2>
        <ul>{run.artifacts.map((a) => <Delivered key={a.artifact + a.digest} ns={ns} artefact={a} />)}</ul>
      </>}
      <h2>Log {shown ? `— ${shown}` : ''}</h2>
      <ConnectionBanner state={streamState === 'lost' ? 'lost' : log.state} />
      <pre className="log" data-testid="run-log">{(stageLines.length ? stageLines : log.lines).join('\n')}</pre>
    </section>
  );
}

/** A delivered artefact: its repository, digest, and the function revisions running that digest. */
function Delivered({ ns, artefact }: { ns: string; artefact: RunView['artifacts'][number] }) {
  const repo = artefact.location.replace(/^[^/]+\//, '').replace(/[:@].*$/, '');
  const revisions = useLoad(() => (artefact.type === 'DOCKER_IMAGE' ? api.revisionsWithDigest(ns, artefact.digest) : Promise.resolve([])), [ns, artefact.digest]);
  return (
    <li data-testid={`artefact-${artefact.artifact}`}>
      {artefact.artifact}: <Link to={`/ns/${encodeURIComponent(ns)}/repo/${repo}`}>{artefact.location}</Link> <code title={artefact.digest}>{shortDigest(artefact.digest)}</code>
      {(revisions.data ?? []).map((r) => (
        <span key={`${r.function}-${r.number}`}> → <Link to={`/ns/${encodeURIComponent(ns)}/functions/${encodeURIComponent(r.function)}?revision=${r.number}#revisions`}>{r.function} revision {r.number}</Link>{r.active ? ' (live)' : ''}</span>
      ))}
    </li>
  );
}
