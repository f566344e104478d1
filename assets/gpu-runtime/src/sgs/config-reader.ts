/**
 * Reads the fields of one JSON object of sgs.json, each once, with its type and range
 * checked and its full path (`partitions.default.gpuShare`) in every error.
 */
import { RuntimeError } from '../errors';

export class SgsConfigError extends RuntimeError {
  constructor(readonly field: string, reason: string) {
    super('SGS_CONFIG', `${field}: ${reason}`);
  }
}

type JsonObject = Record<string, unknown>;

/** `value` as a JSON object, or an error naming `path`. */
export function objectAt(value: unknown, path: string): JsonObject {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new SgsConfigError(path, `must be a JSON object, got ${describe(value)}`);
  }
  return value as JsonObject;
}

interface Presence<T> {
  readonly required?: boolean;
  readonly fallback?: T;
}

export class ConfigReader {
  private readonly read = new Set<string>();

  constructor(private readonly fields: JsonObject, private readonly prefix: string) {}

  /** The full path of a field of this object. */
  path(name: string): string {
    return this.prefix === '' ? name : `${this.prefix}.${name}`;
  }

  has(name: string): boolean {
    return Object.prototype.hasOwnProperty.call(this.fields, name);
  }

  string(name: string, options: Presence<string> & { description?: string } = {}): string | undefined {
    const value = this.take(name, options);
    if (value === undefined) return options.fallback;
    if (typeof value !== 'string' || value.length === 0 || value.length > 4096) {
      throw new SgsConfigError(this.path(name), `must be ${options.description ?? 'a string'} (1 to 4096 characters), got ${describe(value)}`);
    }
    return value;
  }

  boolean(name: string, options: Presence<boolean> = {}): boolean {
    const value = this.take(name, options);
    if (value === undefined) return options.fallback ?? false;
    if (typeof value !== 'boolean') throw new SgsConfigError(this.path(name), `must be true or false, got ${describe(value)}`);
    return value;
  }

  number(name: string, options: Presence<number> & { minExclusive: number; max: number }): number {
    const value = this.take(name, options);
    if (value === undefined) return options.fallback!;
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= options.minExclusive || value > options.max) {
      throw new SgsConfigError(this.path(name), `must be a number above ${options.minExclusive} and at most ${options.max}, got ${describe(value)}`);
    }
    return value;
  }

  integer(name: string, options: Presence<number> & { min: number; max: number }): number {
    const value = this.take(name, options);
    if (value === undefined) return options.fallback!;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < options.min || value > options.max) {
      throw new SgsConfigError(this.path(name), `must be an integer from ${options.min} to ${options.max}, got ${describe(value)}`);
    }
    return value;
  }

  object(name: string): JsonObject {
    return objectAt(this.take(name, { required: true }), this.path(name));
  }

  array(name: string): unknown[] {
    const value = this.take(name, { required: true });
    if (!Array.isArray(value)) throw new SgsConfigError(this.path(name), `must be a JSON array, got ${describe(value)}`);
    return value;
  }

  /** Refuses fields nobody read: a misspelt name must not silently become a default. */
  expectNoOthers(): void {
    for (const name of Object.keys(this.fields)) {
      if (!this.read.has(name)) throw new SgsConfigError(this.path(name), 'is not a field SGS knows (misspelt?)');
    }
  }

  private take(name: string, presence: Presence<unknown>): unknown {
    this.read.add(name);
    if (!this.has(name)) {
      if (presence.required) throw new SgsConfigError(this.path(name), 'is required');
      return undefined;
    }
    return this.fields[name];
  }
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 80)}...` : text;
}
