/** A repository: tags with digest, size, push time, platforms, referrers; pull command; delete. */
import { useState } from 'react';
import { Link, useParams } from 'react-router-dom';
import { api } from '../api/resources.js';
import { atLeast, useRole } from '../session.js';
import { bytes, CopyButton, ErrorBox, Show, shortDigest, Table, Time, useLoad } from '../ui.js';

export default function Repository() {
  const { ns = '', '*': repo = '' } = useParams();
  const role = useRole(ns);
  const detail = useLoad(() => api.repository(ns, repo), [ns, repo]);
  const [error, setError] = useState<unknown>(undefined);
  const host = window.location.host;
  const remove = async (tag: string) => {
    if (!confirm(`Delete tag ${tag} of ${repo}?`)) return;
    setError(undefined);
    try { await api.deleteTag(ns, repo, tag); detail.reload(); } catch (e) { setError(e); }
  };
  return (
    <section>
      <p className="crumbs"><Link to="/">Home</Link> / <Link to={`/ns/${encodeURIComponent(ns)}/repositories`}>{ns}</Link> / {repo}</p>
      <h1>{repo}</h1>
      <ErrorBox error={error} />
      <Show loaded={detail}>{(d) => (
        <>
          <Table rows={d.tags} rowKey={(t) => t.name} empty="No tags." columns={[
            ['Tag', (t) => <b>{t.name}</b>],
            ['Digest', (t) => <code title={t.digest}>{shortDigest(t.digest)}</code>],
            ['Size', (t) => bytes(t.size)],
            ['Pushed', (t) => <Time value={t.pushedAt} />],
            ['Platforms', (t) => t.platforms.join(', ') || '—'],
            ['Referrers', (t) => (t.referrers.length ? t.referrers.map((r) => `${r.artifactType ?? 'artifact'} ${shortDigest(r.digest)}`).join(', ') : '—')],
            ['Pull', (t) => <CopyButton text={`docker pull ${host}/${repo}:${t.name}`} label="Copy pull" />],
            ['', (t) => (atLeast(role, 'owner') ? <button type="button" className="danger small" onClick={() => remove(t.name)}>Delete</button> : null)],
          ]} />
          <h2>Used by</h2>
          <ul>
            {d.usedBy.functions.map((f) => <li key={`f-${f}`}>function <Link to={`/ns/${encodeURIComponent(ns)}/functions/${encodeURIComponent(f)}`}>{f}</Link></li>)}
            {d.usedBy.pipelines.map((p) => <li key={`p-${p}`}>pipeline <Link to={`/ns/${encodeURIComponent(ns)}/pipelines/${encodeURIComponent(p)}`}>{p}</Link></li>)}
            {d.usedBy.functions.length + d.usedBy.pipelines.length === 0 && <li className="muted">Nothing in {ns} references it.</li>}
          </ul>
        </>
      )}</Show>
    </section>
  );
}
