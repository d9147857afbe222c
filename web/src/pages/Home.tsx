/** Home: the namespaces the user can see, with their counts, and a live feed of events. */
import { Link } from 'react-router-dom';
import { api, type DomainEvent } from '../api/resources.js';
import { useEventFeed } from '../live.js';
import { useSession } from '../session.js';
import { ConnectionBanner, Show, Time, useLoad } from '../ui.js';

const count = (p: Promise<unknown[]>) => p.then((l) => l.length, () => null);

export default function Home() {
  const { me } = useSession();
  const names = (me?.namespaces ?? []).map((n) => n.name);
  const counts = useLoad(async () => Promise.all(names.map(async (name) => ({
    name,
    repositories: await count(api.repositories(name)),
    pipelines: await count(api.pipelines(name)),
    functions: await count(api.functions(name)),
  }))), [names.join(',')]);
  // One stream per namespace; the first 10 keep the browser's connection budget.
  const feed = useEventFeed(names.slice(0, 10));
  if (!me) return <p className="muted">Loading…</p>;
  return (
    <div className="home">
      <section>
        <h1>Namespaces</h1>
        {me.namespaces.length === 0 && <p className="muted">You are in no namespace yet.</p>}
        <Show loaded={counts}>{(rows) => (
          <table>
            <thead><tr><th>Namespace</th><th>Your role</th><th>Repositories</th><th>Pipelines</th><th>Functions</th></tr></thead>
            <tbody>{rows.map((row) => (
              <tr key={row.name}>
                <td><Link to={`/ns/${encodeURIComponent(row.name)}`}>{row.name}</Link></td>
                <td>{me.namespaces.find((n) => n.name === row.name)?.role}</td>
                <td data-testid={`count-repositories-${row.name}`}>{row.repositories ?? '—'}</td>
                <td>{row.pipelines ?? '—'}</td>
                <td>{row.functions ?? '—'}</td>
              </tr>
            ))}</tbody>
          </table>
        )}</Show>
      </section>
      <section>
        <h2>Recent events</h2>
        <ConnectionBanner state={feed.state} />
        <EventList events={feed.events} />
      </section>
    </div>
  );
}

/** Where an event's subject lives in the dashboard, when it has a page. */
export function eventLink(event: DomainEvent): string | null {
  const ns = encodeURIComponent(event.namespace);
  const d = event.data as Record<string, string | number | undefined>;
  const run = event.data.run as { pipeline?: string; number?: number } | undefined;
  if (event.type.startsWith('run.') && run?.pipeline && run.number) return `/ns/${ns}/pipelines/${encodeURIComponent(run.pipeline)}/runs/${run.number}`;
  if ((event.type.startsWith('deploy.') || event.type.startsWith('function.')) && d.function) return `/ns/${ns}/functions/${encodeURIComponent(String(d.function))}`;
  if (event.type.startsWith('build.') && d.id) return `/ns/${ns}/builds/${encodeURIComponent(String(d.id))}`;
  if (event.type.startsWith('push') && d.repository) return `/ns/${ns}/repo/${String(d.repository)}`;
  return null;
}

export function EventList({ events }: { events: DomainEvent[] }) {
  if (events.length === 0) return <p className="muted">No events yet.</p>;
  return (
    <ul className="events" data-testid="events">
      {events.map((event) => {
        const link = eventLink(event);
        return (
          <li key={event.id}>
            <Time value={event.createdAt} /> <span className="tag">{event.namespace}</span> <b>{event.type}</b>{' '}
            {link ? <Link to={link}>{event.subject ?? 'open'}</Link> : <span>{event.subject}</span>}
          </li>
        );
      })}
    </ul>
  );
}
