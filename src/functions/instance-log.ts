/**
 * @module functions/instance-log
 * Writes a function's instance output and the deployer's own lines to its log (FunctionLogs),
 * each line tagged with the function's `logTags` (cached briefly: instances may be chatty).
 */
import type { Database } from '../db/db.js';
import type { Live } from './live.js';
import type { FunctionLogs } from './logs.js';
import type { LogLine, StoredConfig } from './spec.js';

export class InstanceLog {
  private readonly tagCache = new Map<string, { tags: Record<string, string>; until: number }>();

  constructor(private readonly db: Database, private readonly logs: FunctionLogs) {}

  write(live: Live, revision: number, instance: string, stream: LogLine['stream'], line: string): void {
    void (async () => {
      const tags = await this.tagsOf(live);
      this.logs.append(live.namespace, { time: new Date().toISOString(), function: live.name, revision, instance, stream, line, tags });
    })();
  }

  private async tagsOf(live: Live): Promise<Record<string, string>> {
    const cached = this.tagCache.get(live.id);
    if (cached && cached.until > Date.now()) return cached.tags;
    const tags = live.active?.config.logTags
      ?? (JSON.parse((await this.db.kysely.selectFrom('functions').select('config').where('id', '=', live.id).executeTakeFirst())?.config ?? '{}') as Partial<StoredConfig>).logTags
      ?? {};
    this.tagCache.set(live.id, { tags, until: Date.now() + 2000 });
    return tags;
  }
}
