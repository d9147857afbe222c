/** Small shared pieces: layout, loading/error states, tables, the connection banner. */
import { useCallback, useEffect, useState, type ReactNode } from 'react';
import { Link, NavLink, Outlet, useNavigate, useRouteError } from 'react-router-dom';
import { errorText, request, setSession, type StreamState } from './api/http.js';
import { useSession } from './session.js';

export function Layout() {
  const { session } = useSession();
  const navigate = useNavigate();
  const signOut = async () => {
    try { await request('DELETE', '/api/v1/sessions/current'); } catch { /* the key may be gone already */ }
    setSession(null);
    navigate('/sign-in');
  };
  return (
    <div className="app">
      <header className="top">
        <Link to="/" className="brand">Slipway</Link>
        <nav>
          <NavLink to="/" end>Home</NavLink>
          <NavLink to="/keys">API keys</NavLink>
        </nav>
        <span className="spacer" />
        {session && <span className="who">{session.name}{session.admin ? ' (admin)' : ''}</span>}
        {session && <button type="button" onClick={signOut}>Sign out</button>}
      </header>
      <main><Outlet /></main>
    </div>
  );
}

export interface Loaded<T> { data: T | undefined; error: unknown; loading: boolean; reload: () => void }

/** Loads once per dependency change; `reload()` fetches again. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): Loaded<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  const [loading, setLoading] = useState(true);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    setLoading(true);
    load().then((value) => { if (live) { setData(value); setError(undefined); } }, (e) => { if (live) setError(e); })
      .finally(() => { if (live) setLoading(false); });
    return () => { live = false; };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { data, error, loading, reload };
}

export function Show<T>({ loaded, children }: { loaded: Loaded<T>; children: (data: T) => ReactNode }) {
  if (loaded.error !== undefined && loaded.data === undefined) return <ErrorBox error={loaded.error} />;
  if (loaded.data === undefined) return <p className="muted">Loading…</p>;
  return <>{children(loaded.data)}</>;
}

export function ErrorBox({ error }: { error: unknown }) {
  if (error === undefined || error === null) return null;
  return <p className="error" role="alert">{errorText(error)}</p>;
}

export function ConnectionBanner({ state }: { state: StreamState }) {
  if (state !== 'lost') return null;
  return <div className="banner" role="status">Connection lost — reconnecting…</div>;
}

export function Status({ value }: { value: string | undefined | null }) {
  return <span className={`status status-${value ?? 'unknown'}`}>{value ?? '—'}</span>;
}

export function Time({ value }: { value: string | number | null | undefined }) {
  if (value === null || value === undefined || value === '') return <span className="muted">—</span>;
  const date = new Date(value);
  return <time dateTime={date.toISOString()} title={date.toISOString()}>{date.toLocaleString()}</time>;
}

export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '—';
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

export function shortDigest(digest: string | null | undefined): string {
  if (!digest) return '—';
  const [algo, hex] = digest.split(':');
  return hex ? `${algo}:${hex.slice(0, 12)}` : digest;
}

export function CopyButton({ text, label = 'Copy' }: { text: string; label?: string }) {
  const [done, setDone] = useState(false);
  return (
    <button type="button" className="small" onClick={() => { void navigator.clipboard?.writeText(text).catch(() => {}); setDone(true); setTimeout(() => setDone(false), 1500); }}>
      {done ? 'Copied' : label}
    </button>
  );
}

/** A table of records; columns pick what to show. */
export function Table<T>({ rows, columns, empty = 'None yet.', rowKey }: { rows: T[]; columns: Array<[string, (row: T) => ReactNode]>; empty?: string; rowKey: (row: T) => string }) {
  if (rows.length === 0) return <p className="muted">{empty}</p>;
  return (
    <table>
      <thead><tr>{columns.map(([title]) => <th key={title}>{title}</th>)}</tr></thead>
      <tbody>{rows.map((row) => <tr key={rowKey(row)}>{columns.map(([title, cell]) => <td key={title}>{cell(row)}</td>)}</tr>)}</tbody>
    </table>
  );
}

/** A screen that failed to render: says so, and offers the way home. */
export function RouteError() {
  const error = useRouteError();
  return <main><h1>Something went wrong</h1><p className="error" role="alert">{errorText(error)}</p><p><a href="/">Home</a></p></main>;
}
