/** Sign in: trades a user name and password for a 12 h dashboard key (POST /api/v1/sessions). */
import { useState, type FormEvent } from 'react';
import { useNavigate, useSearchParams } from 'react-router-dom';
import { ApiCallError, errorText, request, setSession, type Session } from '../api/http.js';

export function SignIn() {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const navigate = useNavigate();
  const [search] = useSearchParams();
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const answer = await request<{ token: string; keyId: string; expiresAt: string | null; name: string; admin: boolean }>('POST', '/api/v1/sessions', { username, password });
      const session: Session = { token: answer.token, keyId: answer.keyId, name: answer.name, admin: answer.admin, expiresAt: answer.expiresAt };
      setSession(session);
      const next = search.get('next');
      navigate(next && next.startsWith('/') && !next.startsWith('//') ? next : '/', { replace: true });
    } catch (e) {
      setError(e instanceof ApiCallError && e.status === 401 ? 'Wrong user name or password.' : errorText(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <div className="sign-in">
      <form onSubmit={submit} className="card">
        <h1>Slipway</h1>
        <label>Username<input name="username" autoComplete="username" value={username} onChange={(e) => setUsername(e.target.value)} required autoFocus /></label>
        <label>Password<input name="password" type="password" autoComplete="current-password" value={password} onChange={(e) => setPassword(e.target.value)} required /></label>
        {error && <p className="error" role="alert">{error}</p>}
        <button type="submit" disabled={busy}>Sign in</button>
      </form>
    </div>
  );
}
