/** Who is signed in (and their roles), shared by every screen. */
import { createContext, useCallback, useContext, useEffect, useState, type ReactNode } from 'react';
import { authOperations } from '@shared/auth/api.js';
import { call, currentSession, onSessionChange, type Session } from './api/http.js';

export type Role = 'admin' | 'owner' | 'contributor' | 'reader';
export interface Me { name: string; kind: string; admin: boolean; namespaces: Array<{ name: string; role: Role; createdAt: string | null }> }

interface SessionValue {
  session: Session | null;
  me: Me | null;
  refreshMe: () => Promise<void>;
}

const SessionContext = createContext<SessionValue>({ session: null, me: null, refreshMe: async () => {} });

export function SessionProvider({ children }: { children: ReactNode }) {
  const [session, setSessionState] = useState<Session | null>(currentSession());
  const [me, setMe] = useState<Me | null>(null);
  const refreshMe = useCallback(async () => {
    if (!currentSession()) { setMe(null); return; }
    try { setMe(await call((c) => c.call(authOperations.getMe)) as Me); } catch { setMe(null); }
  }, []);
  useEffect(() => onSessionChange((s) => { setSessionState(s); if (!s) setMe(null); }), []);
  useEffect(() => { void refreshMe(); }, [session, refreshMe]);
  return <SessionContext.Provider value={{ session, me, refreshMe }}>{children}</SessionContext.Provider>;
}

export function useSession(): SessionValue {
  return useContext(SessionContext);
}

const rank: Record<Role, number> = { reader: 1, contributor: 2, owner: 3, admin: 4 };

/** The caller's role in a namespace (`admin` for admins), null when not a member. */
export function useRole(namespace: string | undefined): Role | null {
  const { me } = useSession();
  if (!me || !namespace) return null;
  if (me.admin) return 'admin';
  return me.namespaces.find((n) => n.name === namespace)?.role ?? null;
}

/** Whether `role` is at least `least` (buttons are hidden below it; the API refuses too). */
export function atLeast(role: Role | null, least: Exclude<Role, 'admin'>): boolean {
  return role !== null && rank[role] >= rank[least];
}
