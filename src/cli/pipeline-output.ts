/**
 * @module cli/pipeline-output
 * How `slipway pipeline` prints things: tables, durations, triggers, a run's stage summary and
 * `pipeline show`'s full description of a run.
 */
import type { ApiResult } from '../http/api-client.js';
import type { pipelineOperations } from '../pipelines/api.js';
import type { RunView, StageState, StepState } from '../pipelines/runs.js';
import { formatElapsed } from './build-progress.js';

export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  return [header, ...rows].map((line) => line.map((cell, i) => (i === line.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n') + '\n';
}

export const duration = (ms: number | null | undefined) => (ms === null || ms === undefined ? '-' : ms < 1000 ? `${ms} ms` : formatElapsed(ms));
export const short = (sha: string | null | undefined, n = 12) => (sha ? sha.slice(0, n) : '-');

export function describeTrigger(run: Pick<RunView, 'trigger'>): string {
  const t = run.trigger;
  switch (t.type) {
    case 'manual': return `manual${t.by ? ` (${t.by})` : ''}`;
    case 'webhook': return `webhook${t.provider ? ` ${t.provider}` : ''}${t.by ? ` (${t.by})` : ''}`;
    case 'registry': return `registry ${t.repository ?? ''}:${t.tag ?? ''}`;
    case 'pipeline': return `pipeline ${t.pipeline ?? ''}#${t.run ?? ''}`;
    case 'rerun': return `re-run of #${t.run ?? '?'}${t.by ? ` (${t.by})` : ''}`;
    default: return t.type + (t.by ? ` (${t.by})` : '');
  }
}

/** Per-stage summary: status, duration, message; then the run's phases. */
export function runSummary(run: RunView): string {
  const rows = run.stages.map((s) => [
    s.name, s.type, s.reused ? `${s.status} (reused)` : s.status, duration(s.durationMs), stageNote(s),
  ]);
  let out = table(['STAGE', 'TYPE', 'STATUS', 'DURATION', 'NOTE'], rows);
  const phases = Object.entries(run.phases ?? {}).filter(([, ms]) => typeof ms === 'number');
  if (phases.length > 0) out += `phases: ${phases.map(([name, ms]) => `${name} ${duration(ms)}`).join(', ')}\n`;
  out += `run ${run.number} ${run.status}${run.durationMs !== null ? ` in ${duration(run.durationMs)}` : ''}${run.error ? `: ${run.error}` : ''}\n`;
  return out;
}

function stageNote(s: StageState): string {
  if (s.message) return s.message;
  if (s.status === 'waiting' && s.type === 'approval') return `waiting for approval${s.until ? ` until ${s.until}` : ''}`;
  if (s.status === 'waiting' && s.until) return `until ${s.until}`;
  if (s.approval) return `${s.approval.decision} by ${s.approval.by ?? 'someone'}${s.approval.comment ? `: ${s.approval.comment}` : ''}`;
  if (s.failedStep) return `step ${s.failedStep} failed${s.exitCode !== undefined ? ` (exit ${s.exitCode})` : ''}`;
  if (s.delivered?.length) return s.delivered.map((d) => `${d.location}@${short(d.digest.replace(/^sha256:/, ''), 12)}`).join(', ');
  if (s.deployed?.length) return s.deployed.map((d) => `${d.function} r${d.revision ?? '-'} ${d.status}`).join(', ');
  if (s.triggered) return `${s.triggered.pipeline}#${s.triggered.run} ${s.triggered.status}`;
  return '';
}

function stepLines(steps: StepState[], indent: string): string[] {
  const lines: string[] = [];
  for (const step of steps) {
    const exit = step.exitCode !== undefined ? ` exit ${step.exitCode}` : '';
    lines.push(`${indent}${step.name}: ${step.status}${exit}${step.durationMs !== undefined ? ` (${duration(step.durationMs)})` : ''}`);
    if (step.onFailure?.length) {
      lines.push(`${indent}  on failure:`);
      lines.push(...stepLines(step.onFailure, `${indent}    `));
    }
  }
  return lines;
}

/** `pipeline show`: everything a run recorded. */
export function describeRun(run: RunView): string {
  const lines = [
    `run:        ${run.pipeline} #${run.number} (${run.id})`,
    `status:     ${run.status}${run.error ? ` — ${run.error}` : ''}`,
    `trigger:    ${describeTrigger(run)}${run.rerunOf ? ` (re-runs ${run.rerunOf})` : ''}`,
    `commit:     ${run.commit ?? '-'}${run.ref ? ` (${run.ref})` : ''}`,
    `created:    ${run.createdAt}`,
    `started:    ${run.startedAt ?? '-'}`,
    `finished:   ${run.finishedAt ?? '-'}${run.durationMs !== null ? ` (${duration(run.durationMs)})` : ''}`,
  ];
  const params = Object.entries(run.parameters);
  if (params.length) lines.push('parameters:', ...params.map(([k, v]) => `  ${k}=${v}`));
  const phases = Object.entries(run.phases ?? {});
  if (phases.length) lines.push(`phases:     ${phases.map(([k, v]) => `${k} ${duration(v)}`).join(', ')}`);
  lines.push('stages:');
  for (const s of run.stages) {
    lines.push(`  ${s.name} (${s.type}, group ${s.group}): ${s.status}${s.reused ? ' (reused)' : ''}${s.durationMs !== undefined ? ` in ${duration(s.durationMs)}` : ''}`);
    const note = stageNote(s);
    if (note) lines.push(`    ${note}`);
    if (s.buildSpec) lines.push(`    build spec: ${s.buildSpec}`);
    if (s.steps?.length) lines.push('    steps:', ...stepLines(s.steps, '      '));
    if (s.outputs?.length) {
      lines.push('    outputs:');
      for (const o of s.outputs) lines.push(o.type === 'BINARY' ? `      ${o.name} (binary) ${o.file} ${o.size} bytes ${o.digest}` : `      ${o.name} (image) ${o.image} ${o.imageId}`);
    }
    if (s.exported && Object.keys(s.exported).length) lines.push('    exported:', ...Object.entries(s.exported).map(([k, v]) => `      ${k}=${v}`));
    if (s.deployed?.length) lines.push('    deployed:', ...s.deployed.map((d) => `      ${d.function}: ${d.image} revision ${d.revision ?? '-'} ${d.status}${d.reason ? ` (${d.reason})` : ''}`));
  }
  const exported = Object.entries(run.exported ?? {});
  if (exported.length) lines.push('exported variables:', ...exported.map(([k, v]) => `  ${k}=${v}`));
  if (run.artifacts.length) lines.push('artifacts:', ...run.artifacts.map((a) => `  ${a.artifact} (${a.type}) → ${a.location}\n    ${a.reference || a.digest}`));
  return lines.join('\n') + '\n';
}

export function countStages(p: ApiResult<typeof pipelineOperations.getPipeline>): number {
  return p.spec.stages.reduce((n, entry) => n + ('parallel' in entry ? entry.parallel.length : 1), 0);
}
