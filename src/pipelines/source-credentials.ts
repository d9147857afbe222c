/**
 * @module pipelines/source-credentials
 * Git credentials of a pipeline source: its username with the password from a secret of the
 * pipeline's namespace. Used when a run clones, when the mirror poller fetches and when a
 * webhook's cut-short file list is asked of git.
 */
import { SlipwayError } from '../http/error-catalog.js';
import type { NamespaceSecrets } from '../vault/secrets.js';
import type { GitCredentials } from '../git/remote.js';
import type { PipelineInput } from './spec.js';

/** The source's credentials cannot be had (no vault, no such secret); the message says which. */
export class SourceCredentialsError extends SlipwayError {
  override name = 'SourceCredentialsError';
  constructor(message: string) {
    super('SOURCE_CREDENTIALS_UNAVAILABLE', message);
  }
}

export async function sourceCredentials(secrets: Pick<NamespaceSecrets, 'reveal'> | undefined, namespace: string, source: PipelineInput['sources'][number]): Promise<GitCredentials | undefined> {
  if (!source.credentials) return undefined;
  if (!secrets) throw new SourceCredentialsError(`source ${source.name}: credentials from the vault need access control turned on`);
  const [secret] = await secrets.reveal(namespace, [source.credentials.passwordSecret]).catch(() => [] as Array<{ value: string }>);
  if (!secret) throw new SourceCredentialsError(`source ${source.name}: namespace "${namespace}" has no secret "${source.credentials.passwordSecret}"`);
  return { username: source.credentials.username, password: secret.value };
}
