import type { MessageBody } from './body';
import type { LazyAbort } from './lazy-abort';
import type { Envelope, IncomingMessage, SessionInfo } from './types';

/**
 * What the message hook receives. A class, not an object literal with getters: a literal's getters
 * are two new closures per message, this shape is made once.
 */
export class HookMessage implements IncomingMessage {
  constructor(
    readonly envelope: Envelope,
    readonly session: SessionInfo,
    readonly body: MessageBody,
    private readonly abortState: LazyAbort,
  ) {}

  get signal(): AbortSignal {
    return this.abortState.signal;
  }

  get aborted(): boolean {
    return this.abortState.aborted;
  }
}
