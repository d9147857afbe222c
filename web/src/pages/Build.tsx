/** One build: status, result and its log, streamed live while it runs. */
import { Link, useParams } from 'react-router-dom';
import { api } from '../api/resources.js';
import { useLogStream } from '../live.js';
import { ConnectionBanner, duration, Show, shortDigest, Status, Time, useLoad } from '../ui.js';
import { useEffect } from 'react';

export default function Build() {
  const { ns = '', id = '' } = useParams();
  const build = useLoad(() => api.build(ns, id), [ns, id]);
  const log = useLogStream(api.buildLogPath(ns, id));
  useEffect(() => { if (log.end) build.reload(); }, [log.end, build.reload]);
  return (
    <section>
      <p className="crumbs"><Link to="/">Home</Link> / <Link to={`/ns/${encodeURIComponent(ns)}/builds`}>{ns}</Link> / build {id.slice(0, 12)}</p>
      <h1>Build {id.slice(0, 12)}</h1>
      <Show loaded={build}>{(b) => (
        <dl className="facts">
          <dt>Status</dt><dd><Status value={b.status} /></dd>
          <dt>Image</dt><dd>{b.imageName ? <Link to={`/ns/${encodeURIComponent(ns)}/repo/${b.imageName.replace(/^[^/]+\//, '').replace(/[:@].*$/, '')}`}>{b.imageName}</Link> : '—'}</dd>
          {b.pullCommand && <><dt>Pull</dt><dd><code>{b.pullCommand}</code></dd></>}
          <dt>Digest</dt><dd><code>{shortDigest(b.digest as string | undefined)}</code></dd>
          <dt>Started</dt><dd><Time value={b.startedAt ?? b.createdAt} /></dd>
          <dt>Duration</dt><dd>{b.startedAt && b.finishedAt ? duration(Date.parse(b.finishedAt) - Date.parse(b.startedAt)) : '—'}</dd>
          {b.errorMessage && <><dt>Error</dt><dd className="error">{b.errorMessage}</dd></>}
        </dl>
      )}</Show>
      <h2>Log</h2>
      <ConnectionBanner state={log.state} />
      <pre className="log" data-testid="build-log">{log.lines.join('\n')}</pre>
    </section>
  );
}
