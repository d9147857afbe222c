/** The signed-in user's API keys: create (the secret is shown once) and revoke. */
import { useState, type FormEvent } from 'react';
import { authOperations } from '@shared/auth/api.js';
import { call, errorText, fieldErrors } from '../api/http.js';
import { CopyButton, ErrorBox, Show, Table, Time, useLoad } from '../ui.js';

const scopeChoices = ['*', 'pull', 'push', 'delete', 'api'] as const;
type Scope = (typeof scopeChoices)[number];

export default function Keys() {
  const keys = useLoad(() => call((c) => c.call(authOperations.listKeys)), []);
  const [name, setName] = useState('');
  const [scope, setScope] = useState<Scope>('*');
  const [expiresIn, setExpiresIn] = useState('');
  const [created, setCreated] = useState<{ name: string; key: string } | null>(null);
  const [error, setError] = useState<unknown>(undefined);
  const [revokeError, setRevokeError] = useState<unknown>(undefined);
  const fields = error === undefined ? {} : fieldErrors(error, ['name', 'scopes', 'expiresIn']);
  const create = async (event: FormEvent) => {
    event.preventDefault();
    setError(undefined);
    try {
      const answer = await call((c) => c.call(authOperations.createKey, { body: { name, scopes: [scope], expiresIn: expiresIn || undefined } }));
      setCreated({ name: answer.name, key: answer.key });
      setName('');
      keys.reload();
    } catch (e) {
      setError(e);
    }
  };
  const revoke = async (id: string) => {
    if (!confirm('Revoke this key? Clients using it stop working.')) return;
    setRevokeError(undefined);
    try { await call((c) => c.call(authOperations.revokeKey, { params: { id } })); keys.reload(); } catch (e) { setRevokeError(e); }
  };
  return (
    <section>
      <h1>API keys</h1>
      <form onSubmit={create} className="inline-form" aria-label="Create an API key">
        <label>Key name<input value={name} onChange={(e) => setName(e.target.value)} />{fields.name && <span className="field-error">{fields.name}</span>}</label>
        <label>Scope<select value={scope} onChange={(e) => setScope(e.target.value as Scope)}>{scopeChoices.map((s) => <option key={s}>{s}</option>)}</select></label>
        <label>Expires in<input placeholder="30d" value={expiresIn} onChange={(e) => setExpiresIn(e.target.value)} />{fields.expiresIn && <span className="field-error">{fields.expiresIn}</span>}</label>
        <button type="submit">Create key</button>
      </form>
      {error !== undefined && Object.keys(fields).length === 0 && <p className="error" role="alert">{errorText(error)}</p>}
      {created && (
        <div className="notice" role="status">
          <p>Key <b>{created.name}</b> — copy it now, it is shown only once:</p>
          <code className="secret" data-testid="new-key">{created.key}</code> <CopyButton text={created.key} />
          <button type="button" className="small" onClick={() => setCreated(null)}>Done</button>
        </div>
      )}
      <ErrorBox error={revokeError} />
      <Show loaded={keys}>{(list) => (
        <Table rows={list.filter((k) => !k.revokedAt)} rowKey={(k) => k.id} empty="No active keys." columns={[
          ['Name', (k) => k.name],
          ['Scopes', (k) => k.scopes.join(', ')],
          ['Created', (k) => <Time value={k.createdAt} />],
          ['Expires', (k) => <Time value={k.expiresAt} />],
          ['Last used', (k) => <Time value={k.lastUsedAt} />],
          ['', (k) => <button type="button" className="danger small" onClick={() => revoke(k.id)} aria-label={`Revoke ${k.name}`}>Revoke</button>],
        ]} />
      )}</Show>
    </section>
  );
}
