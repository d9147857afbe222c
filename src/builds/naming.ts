/**
 * @module builds/naming
 * Names of what builds produce, following DESIGN.md: images `<ns>/<component>-<branch>-image:<tag>`
 * (template per namespace), components as OCI artifacts `<ns>/components/<component>:<tag>-<arch>`.
 * Branches and architectures are folded into the registry grammar (lowercase, `/` → `-`).
 */
import { SlipwayError } from '../http/error-catalog.js';
import { isValidName, isValidTag } from '../registry/grammar.js';

export class NamingError extends SlipwayError {
  constructor(message: string) {
    super('BAD_REQUEST', message);
  }
}

/** Lowercase, runs of characters the grammar does not allow → '-', trimmed. */
export function slug(value: string): string {
  return value.toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^[-._]+|[-._]+$/g, '').replace(/[-]{2,}/g, '-');
}

export function imageRepository(namespace: string, template: string, component: string, branch: string): string {
  const name = `${namespace}/${template.replaceAll('{component}', slug(component)).replaceAll('{branch}', slug(branch))}`;
  if (!isValidName(name)) throw new NamingError(`"${name}" is not a valid repository name; check component, branch and the naming template`);
  return name;
}

export function componentRepository(namespace: string, component: string): string {
  const name = `${namespace}/components/${slug(component)}`;
  if (!isValidName(name)) throw new NamingError(`"${name}" is not a valid repository name; check the component name`);
  return name;
}

export function componentTag(tag: string, architecture: string): string {
  const value = `${slug(tag)}-${slug(architecture)}`.slice(0, 128);
  if (!isValidTag(value)) throw new NamingError(`"${value}" is not a valid tag`);
  return value;
}

export function checkTag(tag: string): string {
  if (!isValidTag(tag)) throw new NamingError(`tag "${tag}" does not follow the registry's tag grammar ([A-Za-z0-9_][A-Za-z0-9._-]{0,127})`);
  return tag;
}
