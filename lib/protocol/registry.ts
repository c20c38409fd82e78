import type { Extension, ParameterHandler, VerbDefinition } from './extension';
import { BUILT_IN_EXTENSIONS } from './extensions';
import { BUILT_IN_MECHANISMS, type SaslMechanism } from './sasl';

/**
 * What a session understands: its extensions (in EHLO order), their verbs and parameters, and the
 * SASL mechanisms. Sessions built from the same options share one registry (it is read-only once
 * built), which keeps an idle session small; `Protocol.use()` copies before changing it.
 */
export class Registry {
  readonly extensions: Extension[] = [];
  readonly names = new Set<string>();
  readonly verbs = new Map<string, VerbDefinition>();
  readonly mailParameters = new Map<string, ParameterHandler>();
  readonly rcptParameters = new Map<string, ParameterHandler>();
  readonly mechanisms = new Map<string, SaslMechanism>();

  add(extension: Extension): void {
    if (this.names.has(extension.name)) throw new Error(`extension ${extension.name} is already registered`);
    this.extensions.push(extension);
    this.names.add(extension.name);
    for (const [verb, definition] of Object.entries(extension.verbs ?? {}))
      this.verbs.set(verb.toUpperCase(), definition);
    for (const [key, handler] of Object.entries(extension.mailParameters ?? {})) {
      this.mailParameters.set(key.toUpperCase(), handler);
    }
    for (const [key, handler] of Object.entries(extension.rcptParameters ?? {})) {
      this.rcptParameters.set(key.toUpperCase(), handler);
    }
  }

  clone(): Registry {
    const copy = new Registry();
    for (const extension of this.extensions) copy.add(extension);
    for (const mechanism of this.mechanisms.values()) copy.mechanisms.set(mechanism.name, mechanism);
    return copy;
  }

  /** The registry for these options, shared with every session built from the same ones. */
  static for(options: RegistryOptions): Registry {
    const key = options.extensions ?? NO_EXTENSIONS;
    const disabled = (options.disabledExtensions ?? [])
      .map((name) => name.toUpperCase())
      .sort()
      .join(',');
    if (options.mechanisms === undefined) {
      const hit = cache.get(key)?.get(disabled);
      if (hit !== undefined) return hit;
    }
    const registry = new Registry();
    const off = new Set(disabled.split(','));
    for (const extension of BUILT_IN_EXTENSIONS) if (!off.has(extension.name)) registry.add(extension);
    for (const extension of options.extensions ?? []) registry.add(extension);
    for (const mechanism of [...BUILT_IN_MECHANISMS, ...(options.mechanisms ?? [])]) {
      registry.mechanisms.set(mechanism.name, mechanism);
    }
    if (options.mechanisms === undefined) {
      let byDisabled = cache.get(key);
      if (byDisabled === undefined) cache.set(key, (byDisabled = new Map()));
      byDisabled.set(disabled, registry);
    }
    return registry;
  }
}

export interface RegistryOptions {
  extensions?: Extension[];
  disabledExtensions?: string[];
  mechanisms?: SaslMechanism[];
}

const NO_EXTENSIONS: Extension[] = [];
const cache = new WeakMap<Extension[], Map<string, Registry>>();
