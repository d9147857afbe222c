/**
 * A function: image, digest, live revision and instances (polled), an invoke console, logs with
 * follow, graphs of its metrics (sampled here every few seconds: the API gives counters), and
 * revisions with a diff of two and a rollback button.
 */
import { useEffect, useMemo, useState, type FormEvent } from 'react';
import { Link, useLocation, useNavigate, useParams, useSearchParams } from 'react-router-dom';
import { errorText, fieldErrors, followNdjson, rawFetch, type StreamState } from '../api/http.js';
import { api, type Revision } from '../api/resources.js';
import { atLeast, useRole } from '../session.js';
import { ConnectionBanner, ErrorBox, Show, shortDigest, Status, Table, Time, useLoad } from '../ui.js';
import { MetricsCharts, type Sample } from './metrics-charts.js';
import { revisionDiff } from '../revision-diff.js';

export default function FunctionPage() {
  const { ns = '', name = '' } = useParams();
  const role = useRole(ns);
  const navigate = useNavigate();
  const fn = useLoad(() => api.function(ns, name), [ns, name]);
  const revisions = useLoad(() => api.revisions(ns, name), [ns, name]);
  const [instances, setInstances] = useState<Array<Record<string, unknown>>>([]);
  const [samples, setSamples] = useState<Sample[]>([]);
  const [error, setError] = useState<unknown>(undefined);
  // `?revision=N#revisions` (a run's delivered artefact links here): that revision marked, in view.
  const [search] = useSearchParams();
  const marked = Number(search.get('revision')) || null;
  const { hash } = useLocation();
  useEffect(() => { if (hash === '#revisions' && revisions.data) document.getElementById('revisions')?.scrollIntoView(); }, [hash, revisions.data]);

  // Instances and metrics change all the time: poll them (and the function's own status).
  useEffect(() => {
    let live = true;
    const poll = async () => {
      const [list, metrics] = await Promise.all([api.instances(ns, name).catch(() => null), api.metrics(ns, name).catch(() => null)]);
      if (!live) return;
      if (list) setInstances(list);
      if (metrics) setSamples((old) => [...old.slice(-59), { at: Date.now(), ...metrics }]);
    };
    void poll();
    const timer = setInterval(() => { void poll(); fn.reload(); }, 3000);
    return () => { live = false; clearInterval(timer); };
  }, [ns, name, fn.reload]);

  const rollback = async (revision: number) => {
    if (!confirm(`Roll ${name} back to revision ${revision}?`)) return;
    setError(undefined);
    try { await api.rollback(ns, name, revision); fn.reload(); revisions.reload(); } catch (e) { setError(e); }
  };
  const remove = async () => {
    if (!confirm(`Delete function ${name}?`)) return;
    try { await api.deleteFunction(ns, name); navigate(`/ns/${encodeURIComponent(ns)}/functions`); } catch (e) { setError(e); }
  };
  const canWrite = atLeast(role, 'contributor');

  return (
    <section>
      <p className="crumbs"><Link to="/">Home</Link> / <Link to={`/ns/${encodeURIComponent(ns)}/functions`}>{ns}</Link> / {name}</p>
      <h1>Function {name}</h1>
      <ErrorBox error={error} />
      <Show loaded={fn}>{(f) => (
        <dl className="facts">
          <dt>Status</dt><dd><Status value={f.status} /> {f.statusReason ?? ''}</dd>
          <dt>Image</dt><dd><code>{f.image}</code></dd>
          <dt>Digest</dt><dd><code title={f.imageDigest ?? ''}>{shortDigest(f.imageDigest)}</code></dd>
          <dt>Live revision</dt><dd data-testid="live-revision">{f.activeRevision ?? '—'}</dd>
          <dt>Instances</dt><dd>{instances.length}</dd>
          <dt>Type / access</dt><dd>{f.type} / {f.access}</dd>
          <dt>URL</dt><dd><code>{f.url}</code></dd>
        </dl>
      )}</Show>
      {canWrite && <p><button type="button" className="danger" onClick={remove}>Delete function</button></p>}
      {instances.length > 0 && <Table rows={instances} rowKey={(i) => String(i.id ?? JSON.stringify(i))} columns={[
        ['Instance', (i) => String(i.id ?? '')], ['Revision', (i) => String(i.revision ?? '')], ['Address', (i) => String(i.address ?? '')], ['In flight', (i) => String(i.inFlight ?? '')], ['Served', (i) => String(i.served ?? '')], ['Idle', (i) => (typeof i.idleMs === 'number' ? `${Math.round(i.idleMs / 1000)} s` : '—')],
      ]} />}
      {canWrite && <FunctionKeys ns={ns} name={name} />}
      {canWrite && fn.data && <Invoke ns={ns} name={name} type={fn.data.type} />}
      <h2>Metrics</h2>
      <MetricsCharts samples={samples} />
      <h2 id="revisions">Revisions</h2>
      <Show loaded={revisions}>{(rows) => <Revisions rows={rows} canWrite={canWrite} rollback={rollback} marked={marked} />}</Show>
      <h2>Logs</h2>
      <Logs ns={ns} name={name} />
    </section>
  );
}

function Revisions({ rows, canWrite, rollback, marked }: { rows: Revision[]; canWrite: boolean; rollback: (n: number) => void; marked: number | null }) {
  const [a, setA] = useState<number | null>(null);
  const [b, setB] = useState<number | null>(null);
  const left = rows.find((r) => r.number === a);
  const right = rows.find((r) => r.number === b);
  const diff = useMemo(() => (left && right ? revisionDiff(left, right) : []), [left, right]);
  return <>
    <Table rows={rows} rowKey={(r) => String(r.number)} columns={[
      ['Revision', (r) => <>{r.number === marked ? <mark data-testid="marked-revision">{r.number}</mark> : r.number}{r.active ? <span className="tag">live</span> : null}</>],
      ['Status', (r) => <Status value={r.status} />],
      ['Image', (r) => <code>{r.image}</code>],
      ['Digest', (r) => <code>{shortDigest(r.imageDigest)}</code>],
      ['Created', (r) => <Time value={r.createdAt} />],
      ['Compare', (r) => <><label className="small"><input type="radio" name="rev-a" checked={a === r.number} onChange={() => setA(r.number)} />A</label><label className="small"><input type="radio" name="rev-b" checked={b === r.number} onChange={() => setB(r.number)} />B</label></>],
      ['', (r) => (canWrite && !r.active ? <button type="button" className="small" onClick={() => rollback(r.number)}>Roll back to {r.number}</button> : null)],
    ]} />
    {left && right && <div className="panel"><h3>Revision {left.number} → {right.number}</h3>
      {diff.length === 0 ? <p className="muted">Same settings.</p> : <table><tbody>{diff.map((d) => <tr key={d.key}><th>{d.key}</th><td className="del">{d.a}</td><td className="add">{d.b}</td></tr>)}</tbody></table>}
    </div>}
  </>;
}

function Invoke({ ns, name, type }: { ns: string; name: string; type: 'http' | 'event' }) {
  const [method, setMethod] = useState(type === 'http' ? 'GET' : 'POST');
  const [path, setPath] = useState('/');
  const [headers, setHeaders] = useState('content-type: application/json');
  const [body, setBody] = useState('');
  const [result, setResult] = useState<{ status: number; headers: Array<[string, string]>; body: string; ms: number } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const send = async (event: FormEvent) => {
    event.preventDefault();
    setError(null);
    const list = Object.fromEntries(headers.split('\n').map((l) => l.trim()).filter(Boolean).map((l) => [l.slice(0, l.indexOf(':')).trim().toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
    const url = type === 'http' ? `${api.gatewayPath(ns, name)}${path.startsWith('/') ? path : `/${path}`}` : `${api.invocationPath(ns, name)}?wait=true`;
    const started = performance.now();
    try {
      const response = await rawFetch(url, { method: type === 'http' ? method : 'POST', headers: list, body: ['GET', 'HEAD'].includes(method) && type === 'http' ? undefined : body });
      const text = await response.text();
      setResult({ status: response.status, headers: [...response.headers.entries()], body: text, ms: performance.now() - started });
    } catch (e) { setError(errorText(e)); }
  };
  return (
    <div className="panel">
      <h2>Invoke</h2>
      <form onSubmit={send} className="invoke" aria-label="Invoke console">
        {type === 'http' && <label>Method<select value={method} onChange={(e) => setMethod(e.target.value)}>{['GET', 'POST', 'PUT', 'PATCH', 'DELETE'].map((m) => <option key={m}>{m}</option>)}</select></label>}
        {type === 'http' && <label>Path<input value={path} onChange={(e) => setPath(e.target.value)} /></label>}
        <label>Headers<textarea rows={2} value={headers} onChange={(e) => setHeaders(e.target.value)} /></label>
        <label>Body<textarea rows={4} value={body} onChange={(e) => setBody(e.target.value)} /></label>
        <button type="submit">Send</button>
      </form>
      {error && <p className="error" role="alert">{error}</p>}
      {result && <div data-testid="invoke-result">
        <p>Status <b data-testid="invoke-status">{result.status}</b> in {result.ms.toFixed(0)} ms</p>
        <details><summary>Headers</summary><pre>{result.headers.map(([k, v]) => `${k}: ${v}`).join('\n')}</pre></details>
        <pre className="log" data-testid="invoke-body">{result.body}</pre>
      </div>}
    </div>
  );
}

function Logs({ ns, name }: { ns: string; name: string }) {
  const [lines, setLines] = useState<string[]>([]);
  const [state, setState] = useState<StreamState>('connecting');
  const [follow, setFollow] = useState(true);
  useEffect(() => {
    if (!follow) return;
    setLines([]);
    return followNdjson(api.functionLogsPath(ns, name), (value) => {
      const l = value as { time?: string; revision?: number; stream?: string; line?: string };
      setLines((old) => [...old.slice(-999), typeof value === 'string' ? value : `${l.time ?? ''} r${l.revision ?? ''} ${l.stream ?? ''} ${l.line ?? ''}`]);
    }, setState);
  }, [ns, name, follow]);
  return <>
    <label className="small"><input type="checkbox" checked={follow} onChange={(e) => setFollow(e.target.checked)} /> follow</label>
    <ConnectionBanner state={state} />
    <pre className="log" data-testid="function-log">{lines.join('\n')}</pre>
  </>;
}



/** Keys that may invoke a private function (contributors only: the API lists them to them). */
function FunctionKeys({ ns, name }: { ns: string; name: string }) {
  const keys = useLoad(() => api.functionKeys(ns, name), [ns, name]);
  const [keyName, setKeyName] = useState('');
  const [created, setCreated] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(undefined);
  const create = async (event: FormEvent) => {
    event.preventDefault();
    setError(undefined);
    try { setCreated((await api.createFunctionKey(ns, name, keyName)).key); setKeyName(''); keys.reload(); } catch (e) { setError(e); }
  };
  const remove = async (id: string) => {
    try { await api.deleteFunctionKey(ns, name, id); keys.reload(); } catch (e) { setError(e); }
  };
  const fields = error === undefined ? {} : fieldErrors(error, ['name']);
  return (
    <details className="panel">
      <summary>Invoke keys</summary>
      <form onSubmit={create} className="inline-form" aria-label="Create an invoke key">
        <label>Invoke key name<input value={keyName} onChange={(e) => setKeyName(e.target.value)} />{fields.name && <span className="field-error">{fields.name}</span>}</label>
        <button type="submit">Create invoke key</button>
      </form>
      {error !== undefined && !fields.name && <ErrorBox error={error} />}
      {created && <p className="notice">Shown once: <code className="secret">{created}</code> (send as <code>Authorization: Bearer …</code>)</p>}
      <Show loaded={keys}>{(rows) => <Table rows={rows} rowKey={(k) => k.id} empty="No keys." columns={[
        ['Name', (k) => k.name], ['Created', (k) => <Time value={k.createdAt} />], ['Last used', (k) => <Time value={k.lastUsedAt} />],
        ['', (k) => <button type="button" className="danger small" onClick={() => remove(k.id)}>Delete</button>],
      ]} />}</Show>
    </details>
  );
}
