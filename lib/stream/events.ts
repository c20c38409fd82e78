import type { Readable } from 'readable-stream';
import { Reply } from '../protocol/reply';
import { reply } from '../protocol/replies';
import type {
  AuthCredentials,
  AuthResult,
  Envelope,
  IncomingMessage,
  MessageResult,
  SessionInfo,
} from '../protocol/types';
import { MessageBodyStream } from './body-stream';

/** A decision that listeners make by calling accept/reject, or by returning a settled Promise. */
class Decision<T> {
  value: T | undefined;
  decided = false;
  private wake: (() => void) | undefined;
  readonly promise = new Promise<void>((resolve) => (this.wake = resolve));

  settle(value: T): void {
    if (this.decided) return;
    this.decided = true;
    this.value = value;
    this.wake?.();
  }
}

function toReply(answer: Reply | string | undefined, fallback: Reply): Reply {
  if (answer instanceof Reply) return answer;
  if (typeof answer === 'string') return fallback.withText(answer);
  return fallback;
}

/**
 * What a `message` listener gets: the envelope, the text as a Readable, and the way to answer.
 * Answer with `accept(id?)` or `reject(reply?)`, or return a Promise: once every listener's Promise
 * has settled without a decision, the message is accepted. A listener that returns no Promise must
 * call accept or reject. The text not read by then is drained.
 */
export class SmtpMessage {
  readonly envelope: Envelope;
  readonly session: SessionInfo;
  readonly body: Readable;
  /** @internal */
  readonly decision = new Decision<MessageResult>();
  private readonly incoming: IncomingMessage;

  constructor(incoming: IncomingMessage) {
    this.incoming = incoming;
    this.envelope = incoming.envelope;
    this.session = incoming.session;
    this.body = new MessageBodyStream(incoming.body);
  }

  /** Fires when the client goes away or the message can no longer be accepted (made on first use). */
  get signal(): AbortSignal {
    return this.incoming.signal;
  }

  /** `signal.aborted` without making the signal. */
  get aborted(): boolean {
    return this.incoming.aborted ?? this.incoming.signal.aborted;
  }

  /** Accept: `250 2.0.0 Ok: queued as <id>` (an id is generated when none is given). */
  accept(id?: string): void {
    this.decision.settle(id);
  }

  /** Refuse with a Reply, or with a text for the default `550 5.7.1`. */
  reject(answer?: Reply | string): void {
    this.decision.settle(toReply(answer, reply('MessageRejected')));
  }

  /** LMTP: one answer per recipient, in RCPT order (ids or Replies). */
  answerEach(answers: Array<string | Reply>): void {
    this.decision.settle(answers);
  }

  /** The whole text as one Buffer (for small messages; streams otherwise). */
  async buffer(): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const chunk of this.body) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  /** Bytes of text received so far. */
  get size(): number {
    return this.incoming.body.bytesReceived;
  }
}

/** What an `auth` listener gets: the decoded credentials and the way to answer. */
export class AuthRequest {
  readonly method: string;
  readonly username: string;
  readonly password: string | undefined;
  readonly authzid: string | undefined;
  readonly accessToken: string | undefined;
  readonly session: SessionInfo;
  /** @internal */
  readonly decision = new Decision<AuthResult>();
  private readonly credentials: AuthCredentials;

  constructor(credentials: AuthCredentials, session: SessionInfo) {
    this.credentials = credentials;
    this.method = credentials.method;
    this.username = credentials.username;
    this.password = credentials.password;
    this.authzid = credentials.authzid;
    this.accessToken = credentials.accessToken;
    this.session = session;
  }

  /** True when `password` is the user's password (works for CRAM-MD5 too). */
  validatePassword(password: string): boolean {
    return this.credentials.validatePassword(password);
  }

  /** `235 2.7.0`; the session's user becomes `user` (default: the username). */
  accept(user?: string): void {
    this.decision.settle({ user: user ?? this.username });
  }

  /** `535 5.7.8`, or a Reply of your own. */
  reject(answer?: Reply): void {
    this.decision.settle(answer ?? false);
  }
}

export type { Decision };
