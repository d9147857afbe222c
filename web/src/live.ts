/** React hooks over the streaming readers: the namespace event feed and followed logs. */
import { useEffect, useRef, useState } from 'react';
import { followSse, type StreamState } from './api/http.js';
import { api, type DomainEvent } from './api/resources.js';

/**
 * Recent events of some namespaces, newest first, kept live: the stored ones first, then the
 * SSE stream resumed from the newest id seen (so a reconnect misses nothing); ids dedupe.
 */
export function useEventFeed(namespaces: string[], limit = 50): { events: DomainEvent[]; state: StreamState } {
  const [events, setEvents] = useState<DomainEvent[]>([]);
  const [states, setStates] = useState<Record<string, StreamState>>({});
  const key = namespaces.join('\n');
  useEffect(() => {
    let live = true;
    const stops: Array<() => void> = [];
    const seen = new Set<string>();
    setEvents([]);
    const add = (list: DomainEvent[]) => {
      const fresh = list.filter((e) => !seen.has(e.id));
      fresh.forEach((e) => seen.add(e.id));
      if (fresh.length > 0) setEvents((old) => [...fresh, ...old].sort((a, b) => (a.id < b.id ? 1 : -1)).slice(0, limit));
    };
    for (const namespace of namespaces) {
      void api.events(namespace, limit).catch(() => [] as DomainEvent[]).then((stored) => {
        if (!live) return;
        add(stored);
        const newest = stored.at(-1)?.id;
        stops.push(followSse(api.eventStreamPath(namespace), {
          lastEventId: newest,
          onEvent: (frame) => { try { add([JSON.parse(frame.data) as DomainEvent]); } catch { /* a comment or a bad frame */ } },
          onState: (s) => setStates((old) => ({ ...old, [namespace]: s })),
        }));
      });
    }
    return () => { live = false; stops.forEach((stop) => stop()); };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key, limit]);
  const values = Object.values(states);
  const state: StreamState = values.includes('lost') ? 'lost' : values.includes('connecting') ? 'connecting' : values.length ? 'open' : 'connecting';
  return { events, state };
}

/** Lines of an SSE log stream (`data:` lines, `event: end` with the final status). */
export function useLogStream(path: string | null, restartKey = ''): { lines: string[]; state: StreamState; end: Record<string, unknown> | null } {
  const [lines, setLines] = useState<string[]>([]);
  const [state, setState] = useState<StreamState>('connecting');
  const [end, setEnd] = useState<Record<string, unknown> | null>(null);
  const buffer = useRef<string[]>([]);
  useEffect(() => {
    if (!path) return;
    buffer.current = [];
    setLines([]);
    setEnd(null);
    // Logs have no event ids: a reconnect replays the whole log, so start over each time.
    const stop = followSse(path, {
      onEvent: (frame) => {
        if (frame.event === 'end') { try { setEnd(JSON.parse(frame.data) as Record<string, unknown>); } catch { setEnd({}); } return; }
        buffer.current.push(frame.data);
        setLines([...buffer.current]);
      },
      onState: (s) => { if (s === 'connecting') buffer.current = []; setState(s); },
    });
    return stop;
  }, [path, restartKey]);
  return { lines, state, end };
}
