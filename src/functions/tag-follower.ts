/**
 * @module functions/tag-follower
 * Functions follow the tags of Slipway's own registry: a push of a new digest under the tag a
 * function names rolls it to a new revision (unless it pins its digest). After a restart, tags
 * pushed while the server was down are caught up once each function is restored.
 */
import type { Logger } from 'pino';
import type { Database } from '../db/db.js';
import type { ImageLocator } from './image-locator.js';
import type { Live } from './live.js';
import type { OwnRegistry } from './local-source.js';
import type { Revisions } from './revisions.js';
import type { StoredConfig } from './spec.js';

export interface TagFollowerDeps {
  db: Database;
  registry: OwnRegistry;
  images: ImageLocator;
  revisions: Revisions;
  logger?: Pick<Logger, 'warn'>;
}

export class TagFollower {
  private closed = false;
  private unsubscribe?: () => void;

  constructor(private readonly deps: TagFollowerDeps) {}

  private get db() { return this.deps.db; }

  /** Starts following pushes. */
  start(): void {
    this.unsubscribe = this.deps.registry.manifests.onTagPushed((event) => this.onTagPushed(event.repository, event.tag, event.digest));
  }

  close(): void {
    this.closed = true;
    this.unsubscribe?.();
  }

  private async onTagPushed(repository: string, tag: string, digest: string): Promise<void> {
    if (this.closed) return;
    const rows = await this.db.kysely.selectFrom('functions').selectAll().execute();
    for (const row of rows) {
      const config = JSON.parse(row.config) as StoredConfig;
      const where = this.deps.images.locate(config.image);
      if (!where.own || config.pinDigest || where.repository !== repository || where.reference !== tag) continue;
      await this.deps.revisions.rollToDigest(row, digest).catch((error: Error) => this.deps.logger?.warn({ err: error }, 'auto-update failed'));
    }
  }

  /** After a restart: a tag pushed while the server was down. */
  async catchUp(live: Live): Promise<void> {
    const row = await this.db.kysely.selectFrom('functions').selectAll().where('id', '=', live.id).executeTakeFirst();
    if (!row) return;
    const config = JSON.parse(row.config) as StoredConfig;
    const where = this.deps.images.locate(config.image);
    if (!where.own || config.pinDigest || where.reference.includes(':')) return;
    const info = await this.deps.registry.manifests.info(where.repository, where.reference).catch(() => null);
    if (info) await this.deps.revisions.rollToDigest(row, info.digest);
  }
}
