/** A namespace: one tab per kind of resource, each tab its own URL (`/ns/:ns/:tab`). */
import { useState } from 'react';
import { Link, NavLink, useParams, useSearchParams } from 'react-router-dom';
import { authOperations } from '@shared/auth/api.js';
import { call } from '../api/http.js';
import { api, type Webhook } from '../api/resources.js';
import { atLeast, useRole, useSession } from '../session.js';
import { duration, ErrorBox, Show, shortDigest, Status, Table, Time, useLoad } from '../ui.js';
import { EventList } from './Home.js';
import { useEventFeed } from '../live.js';

const tabs = ['repositories', 'pipelines', 'builds', 'functions', 'artefacts', 'registries', 'secrets', 'members', 'webhooks', 'events', 'audit'] as const;
type Tab = (typeof tabs)[number];
const titles: Record<Tab, string> = {
  repositories: 'Repositories', pipelines: 'Pipelines', builds: 'Builds', functions: 'Functions', artefacts: 'Artefact versions',
  registries: 'External registries', secrets: 'Secrets', members: 'Members', webhooks: 'Webhooks', events: 'Events', audit: 'Audit',
};

export default function Namespace() {
  const { ns = '', tab = 'repositories' } = useParams();
  const { me } = useSession();
  const role = useRole(ns);
  const visible = tabs.filter((t) => (t === 'audit' ? me?.admin : t === 'secrets' ? atLeast(role, 'contributor') : true));
  const current = (visible as readonly string[]).includes(tab) ? (tab as Tab) : 'repositories';
  const base = `/ns/${encodeURIComponent(ns)}`;
  return (
    <section>
      <p className="crumbs"><Link to="/">Home</Link> / {ns}</p>
      <h1>{ns} <span className="muted small">your role: {role ?? 'none'}</span></h1>
      <nav className="tabs" role="tablist">
        {visible.map((t) => <NavLink key={t} role="tab" to={`${base}/${t}`} className={() => (t === current ? 'active' : '')}>{titles[t]}</NavLink>)}
      </nav>
      <div className="tab-body">
        {current === 'repositories' && <Repositories ns={ns} />}
        {current === 'pipelines' && <Pipelines ns={ns} />}
        {current === 'builds' && <Builds ns={ns} />}
        {current === 'functions' && <Functions ns={ns} />}
        {current === 'artefacts' && <Artefacts ns={ns} />}
        {current === 'registries' && <Registries ns={ns} />}
        {current === 'secrets' && <Secrets ns={ns} />}
        {current === 'members' && <Members ns={ns} />}
        {current === 'webhooks' && <Webhooks ns={ns} />}
        {current === 'events' && <Events ns={ns} />}
        {current === 'audit' && <Audit ns={ns} />}
      </div>
    </section>
  );
}

function Repositories({ ns }: { ns: string }) {
  const repos = useLoad(() => api.repositories(ns), [ns]);
  return <Show loaded={repos}>{(list) => (
    <Table rows={list} rowKey={(r) => r.name} empty="No repositories yet: push an image to <namespace>/<name>." columns={[
      ['Repository', (r) => <Link to={`/ns/${encodeURIComponent(ns)}/repo/${r.name}`}>{r.name}</Link>],
      ['Tags', (r) => r.tags],
      ['Updated', (r) => <Time value={r.updatedAt} />],
    ]} />
  )}</Show>;
}

function Pipelines({ ns }: { ns: string }) {
  const list = useLoad(() => api.pipelines(ns), [ns]);
  return <Show loaded={list}>{(rows) => (
    <Table rows={rows} rowKey={(p) => p.name} empty="No pipelines yet." columns={[
      ['Pipeline', (p) => <Link to={`/ns/${encodeURIComponent(ns)}/pipelines/${encodeURIComponent(p.name)}`}>{p.name}</Link>],
      ['Stages', (p) => (p.spec.stages ?? []).length],
      ['Last run', (p) => (p.lastRun ? <Link to={`/ns/${encodeURIComponent(ns)}/pipelines/${encodeURIComponent(p.name)}/runs/${p.lastRun.number}`}>#{p.lastRun.number} <Status value={p.lastRun.status} /></Link> : '—')],
      ['Updated', (p) => <Time value={p.updatedAt} />],
    ]} />
  )}</Show>;
}

const buildStatuses = ['', 'queued', 'running', 'succeeded', 'failed', 'cancelled'] as const;

/** Builds, filtered on the server by what the URL's query says (`?status=failed&repository=team/app`), so a link shares the view. */
export function Builds({ ns }: { ns: string }) {
  const [search, setSearch] = useSearchParams();
  const filters = { status: search.get('status') ?? '', repository: search.get('repository') ?? '', source: search.get('source') ?? '', kind: search.get('kind') ?? '' };
  const list = useLoad(() => api.builds(ns, filters), [ns, filters.status, filters.repository, filters.source, filters.kind]);
  const [repository, setRepository] = useState(filters.repository);
  const filter = (key: keyof typeof filters, value: string) => { const next = new URLSearchParams(search); if (value) next.set(key, value); else next.delete(key); setSearch(next); };
  const any = Object.values(filters).some(Boolean);
  return <>
    <form className="inline-form" aria-label="Build filters" onSubmit={(e) => { e.preventDefault(); filter('repository', repository.trim()); }}>
      <label>Status<select value={filters.status} onChange={(e) => filter('status', e.target.value)}>{buildStatuses.map((s) => <option key={s} value={s}>{s || 'any'}</option>)}</select></label>
      <label>Kind<select value={filters.kind} onChange={(e) => filter('kind', e.target.value)}>{['', 'image', 'component'].map((s) => <option key={s} value={s}>{s || 'any'}</option>)}</select></label>
      <label>Source<select value={filters.source} onChange={(e) => filter('source', e.target.value)}>{['', 'git', 'upload'].map((s) => <option key={s} value={s}>{s || 'any'}</option>)}</select></label>
      <label>Repository<input value={repository} placeholder={`${ns}/app-main-image`} onChange={(e) => setRepository(e.target.value)} onBlur={() => { if (repository.trim() !== filters.repository) filter('repository', repository.trim()); }} /></label>
      <button type="submit" className="small">Filter</button>
      {any && <button type="button" className="small" onClick={() => { setRepository(''); setSearch(new URLSearchParams()); }}>Clear filters</button>}
    </form>
    <Show loaded={list}>{(rows) => (
    <Table rows={rows} rowKey={(b) => b.id} empty={any ? 'No builds match.' : 'No builds yet.'} columns={[
      ['Build', (b) => <Link to={`/ns/${encodeURIComponent(ns)}/builds/${encodeURIComponent(b.id)}`}>{b.id.slice(0, 12)}</Link>],
      ['Kind', (b) => b.kind],
      ['Image', (b) => String(b.imageName ?? b.component ?? '')],
      ['Status', (b) => <Status value={b.status} />],
      ['Started', (b) => <Time value={b.startedAt ?? b.createdAt} />],
      ['Duration', (b) => (b.startedAt && b.finishedAt ? duration(Date.parse(b.finishedAt) - Date.parse(b.startedAt)) : '—')],
    ]} />
  )}</Show>
  </>;
}

function Functions({ ns }: { ns: string }) {
  const list = useLoad(() => api.functions(ns), [ns]);
  return <Show loaded={list}>{(rows) => (
    <Table rows={rows} rowKey={(f) => f.name} empty="No functions yet." columns={[
      ['Function', (f) => <Link to={`/ns/${encodeURIComponent(ns)}/functions/${encodeURIComponent(f.name)}`}>{f.name}</Link>],
      ['Status', (f) => <Status value={f.status} />],
      ['Revision', (f) => String(f.activeRevision ?? '—')],
      ['Instances', (f) => f.instances],
      ['Image', (f) => String(f.image ?? '')],
      ['Digest', (f) => <code>{shortDigest(f.imageDigest)}</code>],
    ]} />
  )}</Show>;
}

function Artefacts({ ns }: { ns: string }) {
  const list = useLoad(() => api.artefacts(ns), [ns]);
  return <Show loaded={list}>{(rows) => (
    <Table rows={rows} rowKey={(a) => String(a.id)} empty="No artefact versions yet." columns={[
      ['Name', (a) => String(a.name ?? '')],
      ['Version', (a) => String(a.version ?? '')],
      ['Ref', (a) => String(a.ref ?? '')],
      ['Digest', (a) => <code>{shortDigest(a.digest)}</code>],
      ['Type', (a) => String(a.type ?? '')],
      ['Created', (a) => <Time value={a.createdAt} />],
    ]} />
  )}</Show>;
}

/** Credentials are masked by the API already; the dashboard shows no secret field at all. */
function Registries({ ns }: { ns: string }) {
  const list = useLoad(() => api.registries(ns), [ns]);
  const hidden = new Set(['password', 'secret', 'token', 'credentials', 'credential', 'secretAccessKey', 'privateKey', 'serviceAccountKey']);
  return <Show loaded={list}>{(rows) => (
    <Table rows={rows} rowKey={(r) => String(r.id)} empty="No external registries." columns={[
      ['Name', (r) => r.id],
      ['Type', (r) => r.type],
      // The route answers `prefix` (credentials/api.ts registryView): the registry and path it covers.
      ['Registry', (r) => r.prefix],
      ['Details', (r) => <code className="small">{Object.entries(r).filter(([k]) => !hidden.has(k) && !['id', 'name', 'type', 'registry'].includes(k)).map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`).join(' ')}</code>],
      ['Credentials', () => '••••••'],
    ]} />
  )}</Show>;
}

function Secrets({ ns }: { ns: string }) {
  const list = useLoad(() => api.secrets(ns), [ns]);
  return <Show loaded={list}>{(rows) => (
    <Table rows={rows} rowKey={(s) => (typeof s === 'string' ? s : String(s.name))} empty="No secrets." columns={[
      ['Name', (s) => (typeof s === 'string' ? s : String(s.name))],
      ['Updated', (s) => (typeof s === 'string' ? '—' : <Time value={(s.updatedAt ?? s.createdAt) as string | undefined} />)],
      ['Value', () => <span className="muted">write-only</span>],
    ]} />
  )}</Show>;
}

function Members({ ns }: { ns: string }) {
  const role = useRole(ns);
  const list = useLoad(() => call((c) => c.call(authOperations.listMembers, { params: { ns } })), [ns]);
  const [error, setError] = useState<unknown>(undefined);
  const remove = async (member: string) => {
    if (!confirm(`Remove ${member} from ${ns}?`)) return;
    try { await call((c) => c.call(authOperations.removeMember, { params: { ns, member } })); list.reload(); } catch (e) { setError(e); }
  };
  return <>
    <ErrorBox error={error} />
    <Show loaded={list}>{(rows) => (
      <Table rows={rows} rowKey={(m) => m.name} columns={[
        ['Member', (m) => m.name],
        ['Kind', (m) => m.kind],
        ['Role', (m) => m.role],
        ['', (m) => (atLeast(role, 'owner') ? <button type="button" className="danger small" onClick={() => remove(m.name)}>Remove</button> : null)],
      ]} />
    )}</Show>
  </>;
}

function Webhooks({ ns }: { ns: string }) {
  const list = useLoad(() => api.webhooks(ns), [ns]);
  const [open, setOpen] = useState<string | null>(null);
  return <Show loaded={list}>{(rows) => (
    <>
      <Table rows={rows} rowKey={(w) => w.id} empty="No webhooks." columns={[
        ['URL', (w) => w.url],
        ['Events', (w) => w.events.join(', ')],
        ['Active', (w) => (w.active ? 'yes' : 'no')],
        ['Secret', (w) => <code>{w.secretHint ? `…${w.secretHint}` : '••••'}</code>],
        ['', (w) => <button type="button" className="small" onClick={() => setOpen(open === w.id ? null : w.id)}>Deliveries</button>],
      ]} />
      {open && <Deliveries ns={ns} webhook={rows.find((w) => w.id === open)!} />}
    </>
  )}</Show>;
}

function Deliveries({ ns, webhook }: { ns: string; webhook: Webhook }) {
  const role = useRole(ns);
  const list = useLoad(() => api.deliveries(ns, webhook.id), [ns, webhook.id]);
  const [error, setError] = useState<unknown>(undefined);
  const redeliver = async (id: string) => {
    try { await api.redeliver(ns, webhook.id, id); list.reload(); } catch (e) { setError(e); }
  };
  return <div className="panel">
    <h3>Deliveries to {webhook.url}</h3>
    <ErrorBox error={error} />
    <Show loaded={list}>{(rows) => (
      <Table rows={rows} rowKey={(d) => d.id} empty="No deliveries yet." columns={[
        ['Delivery', (d) => d.id.slice(0, 12)],
        ['Event', (d) => d.eventType ?? ''],
        ['Status', (d) => <Status value={d.status} />],
        ['Attempts', (d) => d.attempts],
        ['At', (d) => <Time value={d.createdAt} />],
        ['', (d) => (atLeast(role, 'contributor') ? <button type="button" className="small" onClick={() => redeliver(d.id)}>Redeliver</button> : null)],
      ]} />
    )}</Show>
  </div>;
}

function Events({ ns }: { ns: string }) {
  const feed = useEventFeed([ns]);
  return <EventList events={feed.events} />;
}

function Audit({ ns }: { ns: string }) {
  const list = useLoad(() => call((c) => c.call(authOperations.listAudit, { query: { limit: 200 } })), [ns]);
  return <Show loaded={list}>{(rows) => (
    <Table rows={rows.filter((r) => !r.target || r.target.startsWith(`${ns}`) || r.target.includes(`${ns}/`)).reverse()} rowKey={(r) => String(r.seq)} empty="No audit records for this namespace." columns={[
      ['At', (r) => <Time value={r.at} />],
      ['Actor', (r) => r.actor ?? '—'],
      ['Action', (r) => r.action],
      ['Target', (r) => r.target ?? '—'],
      ['Outcome', (r) => <Status value={r.outcome} />],
    ]} />
  )}</Show>;
}


