/** A pipeline: definition (YAML, errors at their line), triggers and webhook URL, runs with filters. */
import { useMemo, useState, type FormEvent } from 'react';
import { Link, useNavigate, useParams, useSearchParams } from 'react-router-dom';
import { errorText } from '../api/http.js';
import { api } from '../api/resources.js';
import { atLeast, useRole } from '../session.js';
import { CopyButton, duration, ErrorBox, Show, Status, Table, Time, useLoad } from '../ui.js';
import { stringify as toYaml } from 'yaml';

const statuses = ['', 'queued', 'running', 'waiting', 'succeeded', 'failed', 'cancelled'];

export default function Pipeline() {
  const { ns = '', name = '' } = useParams();
  const role = useRole(ns);
  const navigate = useNavigate();
  const [search, setSearch] = useSearchParams();
  const status = search.get('status') ?? '';
  const branch = search.get('branch') ?? '';
  const trigger = search.get('trigger') ?? '';
  const pipeline = useLoad(() => api.pipeline(ns, name), [ns, name]);
  const runs = useLoad(() => api.runs(ns, name, status || undefined), [ns, name, status]);
  const [error, setError] = useState<unknown>(undefined);
  const [params, setParams] = useState('');
  const [editing, setEditing] = useState<string | null>(null);
  const [yamlError, setYamlError] = useState<string | null>(null);
  const base = `/ns/${encodeURIComponent(ns)}/pipelines/${encodeURIComponent(name)}`;
  const filtered = useMemo(() => (runs.data ?? []).filter((r) =>
    (!branch || String(r.ref ?? '').includes(branch)) && (!trigger || String((r.trigger as { type?: string } | undefined)?.type ?? '') === trigger)), [runs.data, branch, trigger]);

  const start = async (event: FormEvent) => {
    event.preventDefault();
    setError(undefined);
    try {
      const parameters = Object.fromEntries(params.split(/\n|,/).map((l) => l.trim()).filter(Boolean).map((l) => [l.split('=')[0]!.trim(), l.slice(l.indexOf('=') + 1)]));
      const run = await api.startRun(ns, name, { parameters });
      navigate(`${base}/runs/${run.number}`);
    } catch (e) { setError(e); }
  };
  const save = async () => {
    setYamlError(null);
    try { await api.replacePipelineYaml(ns, name, editing ?? ''); setEditing(null); pipeline.reload(); } catch (e) { setYamlError(errorText(e)); }
  };
  const remove = async () => {
    if (!confirm(`Delete pipeline ${name}?`)) return;
    try { await api.deletePipeline(ns, name); navigate(`/ns/${encodeURIComponent(ns)}/pipelines`); } catch (e) { setError(e); }
  };
  const filter = (key: string, value: string) => { const next = new URLSearchParams(search); if (value) next.set(key, value); else next.delete(key); setSearch(next); };

  return (
    <section>
      <p className="crumbs"><Link to="/">Home</Link> / <Link to={`/ns/${encodeURIComponent(ns)}/pipelines`}>{ns}</Link> / {name}</p>
      <h1>Pipeline {name}</h1>
      <ErrorBox error={error} />
      <Show loaded={pipeline}>{(p) => {
        const hookUrl = `${window.location.origin}/api/v1/namespaces/${encodeURIComponent(ns)}/pipelines/${encodeURIComponent(name)}/webhook`;
        const yaml = toYaml(p.spec);
        const badLine = yamlError ? lineOf(yamlError, editing ?? '') : null;
        return (
          <>
            <dl className="facts">
              <dt>Webhook URL</dt><dd><code>{hookUrl}</code> <CopyButton text={hookUrl} /> {p.webhook.secretSet ? '(signed with its secret)' : ''}</dd>
              <dt>Triggers</dt><dd>{Object.entries(p.spec.triggers ?? {}).map(([kind, t]) => `${kind} ${JSON.stringify(t)}`).join('; ') || 'manual only'}</dd>
            </dl>
            {atLeast(role, 'contributor') && (
              <form onSubmit={start} className="inline-form" aria-label="Run with parameters">
                <label>Parameters (NAME=value, comma separated)<input value={params} onChange={(e) => setParams(e.target.value)} /></label>
                <button type="submit">Run</button>
                <button type="button" className="danger" onClick={remove}>Delete pipeline</button>
              </form>
            )}
            <h2>Definition</h2>
            {editing === null ? (
              <>
                <pre className="yaml">{yaml}</pre>
                {atLeast(role, 'contributor') && <button type="button" onClick={() => setEditing(yaml)}>Edit</button>}
              </>
            ) : (
              <div className="editor">
                <textarea aria-label="Definition (YAML)" rows={Math.min(30, editing.split('\n').length + 2)} value={editing} onChange={(e) => setEditing(e.target.value)} />
                {yamlError && <p className="error" role="alert">{badLine ? `line ${badLine}: ` : ''}{yamlError}</p>}
                <button type="button" onClick={save}>Save</button> <button type="button" onClick={() => { setEditing(null); setYamlError(null); }}>Cancel</button>
              </div>
            )}
          </>
        );
      }}</Show>
      <h2>Runs</h2>
      <div className="inline-form">
        <label>Status<select value={status} onChange={(e) => filter('status', e.target.value)}>{statuses.map((s) => <option key={s} value={s}>{s || 'any'}</option>)}</select></label>
        <label>Branch<input value={branch} onChange={(e) => filter('branch', e.target.value)} /></label>
        <label>Trigger<select value={trigger} onChange={(e) => filter('trigger', e.target.value)}>{['', 'manual', 'webhook', 'mirror', 'rerun', 'schedule'].map((s) => <option key={s} value={s}>{s || 'any'}</option>)}</select></label>
      </div>
      <Show loaded={runs}>{() => (
        <Table rows={filtered} rowKey={(r) => r.id} empty="No runs." columns={[
          ['Run', (r) => <Link to={`${base}/runs/${r.number}`}>#{r.number}</Link>],
          ['Status', (r) => <Status value={r.status} />],
          ['Trigger', (r) => String((r.trigger as { type?: string } | undefined)?.type ?? '')],
          ['Ref', (r) => String(r.ref ?? '—')],
          ['Commit', (r) => <code>{(r.commit ?? '').slice(0, 10) || '—'}</code>],
          ['Created', (r) => <Time value={r.createdAt} />],
          ['Duration', (r) => duration(r.durationMs as number | null)],
        ]} />
      )}</Show>
    </section>
  );
}

/**
 * The line a validation message names: `line N` as the YAML parser says it, or the field path
 * (`stages.1.name: …`) walked through the indentation of the text being edited.
 */
function lineOf(message: string, yaml: string): number | null {
  const explicit = /line (\d+)/i.exec(message);
  if (explicit) return Number(explicit[1]);
  const path = /^([\w.]+):/.exec(message)?.[1]?.split('.');
  if (!path) return null;
  const lines = yaml.split('\n').map((text) => {
    const indent = text.length - text.trimStart().length;
    const trimmed = text.trimStart();
    const dash = trimmed.startsWith('- ');
    return { blank: trimmed === '' || trimmed.startsWith('#'), indent, dash, key: dash ? trimmed.slice(2) : trimmed, keyIndent: dash ? indent + 2 : indent };
  });
  let pos = -1;
  let depth = -1;
  let inItem = false;
  for (const segment of path) {
    let found = -1;
    if (/^\d+$/.test(segment)) {
      let count = -1;
      let itemIndent: number | null = null;
      for (let i = pos + 1; i < lines.length; i++) {
        const l = lines[i]!;
        if (l.blank) continue;
        if (!l.dash && l.keyIndent <= depth) break;
        if (l.dash && (itemIndent === null || l.indent === itemIndent)) {
          itemIndent = l.indent;
          if (++count === Number(segment)) { found = i; depth = l.indent; break; }
        }
      }
      inItem = true;
    } else {
      for (let i = inItem ? pos : pos + 1; i < lines.length; i++) {
        const l = lines[i]!;
        if (l.blank) continue;
        if (i > pos && (l.keyIndent <= depth || (l.dash && l.indent <= depth))) break;
        if (l.keyIndent > depth && l.key.startsWith(`${segment}:`)) { found = i; depth = l.keyIndent; break; }
      }
      inItem = false;
    }
    if (found < 0) break;
    pos = found;
  }
  return pos >= 0 ? pos + 1 : null;
}
