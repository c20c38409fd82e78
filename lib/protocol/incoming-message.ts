import type { MessageBody } from './body';
import type { LazyAbort } from './lazy-abort';
import type { Envelope, IncomingMessage, SessionInfo } from './types';

/**
 * What the message hook receives. A class, not an object literal with getters: a literal's getters
 * are two new closures per message, this shape is made once.
 */
export class HookMessage implements IncomingMessage {
  // A real private field: not copied by a spread, not printed by JSON.stringify.
  readonly #abortState: LazyAbort;

  constructor(
    readonly envelope: Envelope,
    readonly session: SessionInfo,
    readonly body: MessageBody,
    abortState: LazyAbort,
  ) {
    this.#abortState = abortState;
  }

  get signal(): AbortSignal {
    return this.#abortState.signal;
  }

  get aborted(): boolean {
    return this.#abortState.aborted;
  }
}
