import { randomBytes as cryptoRandomBytes } from 'node:crypto';
import {
  parsePathArgument,
  parseParameters,
  type ParsedPath,
  type PathOptions,
  type PathProblem,
} from './address';
import { MessageBody } from './body';
import { decodeLine, isHttpRequestLine, parseCommand, type Command } from './command';
import type { Extension, ParameterHandler, ParameterTarget, VerbDefinition } from './extension';
import { HookMessage } from './incoming-message';
import { LazyAbort } from './lazy-abort';
import { Registry } from './registry';
import { Framer, FrameType, type Frame } from './framer';
import { isReply, type Reply } from './reply';
import { reply, type ReplyId } from './replies';
import { decodeSaslBase64, type SaslMechanism, type SaslStep } from './sasl';
import {
  SEQUENCE_TEXT,
  State,
  TRANSITIONS,
  TRANSITION_RULES,
  UNIMPLEMENTED_VERBS,
  readsCommands,
  sequenceError,
} from './state';
import { TextInspector } from './text-inspector';
import type {
  AuthCredentials,
  AuthResult,
  BareNewlinePolicy,
  Envelope,
  MaybePromise,
  MessageResult,
  ProtocolFlags,
  ProtocolHooks,
  SessionInfo,
  TlsInfo,
} from './types';

export interface ProtocolOptions extends ProtocolHooks, ProtocolFlags {
  /** Extensions added after the built-in ones (user extensions, or opt-ins such as `requireTls`, `limits`). */
  extensions?: Extension[];
  /** Names of built-in extensions to leave off (e.g. `['CHUNKING']`). */
  disabledExtensions?: string[];
  /** Extra SASL mechanisms. */
  mechanisms?: SaslMechanism[];
  /**
   * Commands switched off for a session (502, and their EHLO keyword hidden), e.g. AUTH only from
   * some networks: `(session) => isInternal(session.remoteAddress) ? [] : ['AUTH']`.
   */
  disabledCommands?: string[] | ((session: SessionInfo) => string[]);
  /** Facts about the connection, for hooks (the stream fills these in). */
  remoteAddress?: string;
  remotePort?: number;
  localAddress?: string;
  localPort?: number;
  /** Injected for tests and for the sans-I/O rule; default node:crypto / Date.now. */
  randomBytes?: (size: number) => Buffer;
  now?: () => number;
}

/** What one `run()` produced: reply bytes to send (one write per batch), and what to do next. */
export interface RunResult {
  /** Rendered replies, in order; null when there is nothing to send. */
  output: Buffer | null;
  /** An async hook or a slow message consumer is pending: call `run()` again once it settles. */
  pending: Promise<void> | null;
  /** `starttls`: send `output`, then hand the connection to TLS and call `tlsStarted()`. `close`: send `output`, then close. */
  action: 'starttls' | 'close' | null;
  /** The run stopped at its `maxReplies`: complete input is still queued; send `output`, then run again. */
  more: boolean;
}

/** `runText()`'s answer: `run()`'s, with the replies as text (to be sent UTF-8 encoded). */
export interface TextRunResult {
  output: string | null;
  pending: Promise<void> | null;
  action: 'starttls' | 'close' | null;
  more: boolean;
}

/** `parse()`'s answer, in the spirit of MailHog's `Parse(buf) (rest, reply)`. */
export interface ParseResult<T extends string | Buffer> {
  rest: T;
  /** The first reply produced (null: none yet, e.g. a DATA line or a pending hook). */
  reply: Reply | null;
  /** All replies produced (an error can be followed by a 421). */
  replies: Reply[];
  /** Set when a hook is still deciding: await `flush()` for the replies. */
  pending: Promise<void> | null;
}

export const DEFAULTS = {
  hostname: 'localhost',
  ident: 'smtp-session-stream',
  maximumRecipients: 100,
  maximumLineLength: 512,
  maximumAuthLineLength: 12288,
  hardLineCap: 256 * 1024,
  maxMessageSize: 25 * 1024 * 1024,
  maxDataLineLength: 0,
  bareNewlines: 'keep' as BareNewlinePolicy,
  allowBareLfInCommands: true,
  maxErrors: 20,
  maxAuthFailures: 3,
  maxCommandsBeforeHelo: 20,
  bodyHighWaterMark: 64 * 1024,
} as const;

/**
 * What `run()` answers from inside a hook of a run under way: nothing. The replies queued so far
 * belong to the outer run, which sends them in order with its own.
 */
const NESTED_RUN = Object.freeze({ output: null, pending: null, action: null, more: false });

/** `run()` without a reply limit; a small integer (an Infinity field would be a boxed number per session). */
const NO_REPLY_LIMIT = 0x3fffffff;

/** Verbs RFC 3207 §4 lets through before TLS when TLS is required (plus HELO/LHLO/RSET). */
const ALLOWED_BEFORE_TLS = new Set(['NOOP', 'EHLO', 'HELO', 'LHLO', 'STARTTLS', 'QUIT', 'RSET']);
/** Verbs whose arguments may hold UTF-8 (addresses, RFC 6531). */
const UTF8_VERBS = new Set(['MAIL', 'RCPT', 'VRFY', 'EXPN']);
/** The verbs `dispatch` handles itself; the rest of the transition table belongs to extensions. */
const CORE_VERBS = new Set([
  'HELO',
  'EHLO',
  'LHLO',
  'MAIL',
  'RCPT',
  'DATA',
  'RSET',
  'NOOP',
  'QUIT',
  'HELP',
  'VRFY',
]);

interface MessageInProgress {
  body: MessageBody;
  controller: LazyAbort;
  /** Set once the message hook has answered (or failed). */
  outcome: { value?: MessageResult; error?: unknown } | undefined;
  settled: Promise<void> | undefined;
  /** Why the message will be refused at its end, once known (size, bare newline, long line). */
  failure: Reply | undefined;
  inspector: TextInspector | undefined;
}

interface Transaction {
  envelope: Envelope;
  rcptAttempts: number;
  message: MessageInProgress | undefined;
}

/** Where the bytes of the BDAT chunk being read go. */
interface ChunkInProgress {
  size: number;
  last: boolean;
  /** false: the BDAT command was refused and its bytes are only consumed. */
  accepted: boolean;
}

class SmtpReplyError extends Error {
  constructor(readonly reply: Reply) {
    super(reply.toString());
  }
}

/**
 * The server side of one SMTP session as a pure state machine: bytes in, replies out, hooks called
 * in between; no sockets, no timers (h11's sans-I/O shape, MailHog's API). Pipelined input is
 * handled strictly in order: while a hook's Promise is pending nothing else is processed.
 */
export class Protocol {
  state: State = State.Invalid;
  readonly session: SessionInfo;

  hostname: string;
  ident: string;
  rejectBrokenMailSyntax: boolean;
  rejectBrokenRcptSyntax: boolean;
  requireTls: boolean;
  requireAuth: boolean;
  maximumRecipients: number;
  maximumLineLength: number;
  maximumAuthLineLength: number;
  maxMessageSize: number;
  maxDataLineLength: number;
  bareNewlines: BareNewlinePolicy;
  allowBareLfInCommands: boolean;
  maxErrors: number;
  maxAuthFailures: number;
  maxCommandsBeforeHelo: number;
  readonly lmtp: boolean;

  logHandler: ProtocolHooks['logHandler'];
  messageReceivedHandler: ProtocolHooks['messageReceivedHandler'];
  validateSenderHandler: ProtocolHooks['validateSenderHandler'];
  validateRecipientHandler: ProtocolHooks['validateRecipientHandler'];
  validateAuthenticationHandler: ProtocolHooks['validateAuthenticationHandler'];
  lookupPassword: ProtocolHooks['lookupPassword'];
  smtpVerbFilter: ProtocolHooks['smtpVerbFilter'];
  tlsHandler: ProtocolHooks['tlsHandler'];
  getAuthenticationMechanismsHandler: ProtocolHooks['getAuthenticationMechanismsHandler'];
  onCommand: ProtocolHooks['onCommand'];
  onReply: ProtocolHooks['onReply'];
  /** Replies produced so far (a driver can tell whether a command completed since it last looked). */
  replyCount = 0;

  private readonly framer: Framer;
  private registry: Registry;
  /** False while the registry is shared with other sessions (copy before `use()` changes it). */
  private ownsRegistry = false;
  private readonly randomBytes: (size: number) => Buffer;
  private readonly now: () => number;
  private readonly bodyHighWaterMark: number;
  private readonly disabledCommands: ProtocolOptions['disabledCommands'];

  private replies: Reply[] = [];
  private action: RunResult['action'] = null;
  private waiting: Promise<void> | null = null;
  private transaction: Transaction | undefined;
  private chunk: ChunkInProgress | undefined;
  private sasl: { next: ((response: Buffer) => SaslStep) | undefined; failed: boolean } | undefined;
  private errorCount = 0;
  private authFailures = 0;
  private commandsBeforeHelo = 0;
  private shutdownRequested = false;
  private pumping = false;
  /** How many replies the current `run()` may queue, and whether it stopped there with input left. */
  private replyBudget = NO_REPLY_LIMIT;
  private stoppedEarly = false;

  constructor(options: ProtocolOptions = {}) {
    this.hostname = options.hostname ?? DEFAULTS.hostname;
    this.ident = options.ident ?? DEFAULTS.ident;
    this.rejectBrokenMailSyntax = options.rejectBrokenMailSyntax ?? false;
    this.rejectBrokenRcptSyntax = options.rejectBrokenRcptSyntax ?? false;
    this.requireTls = options.requireTls ?? false;
    this.requireAuth = options.requireAuth ?? false;
    this.maximumRecipients = options.maximumRecipients ?? DEFAULTS.maximumRecipients;
    this.maximumLineLength = options.maximumLineLength ?? DEFAULTS.maximumLineLength;
    this.maximumAuthLineLength = options.maximumAuthLineLength ?? DEFAULTS.maximumAuthLineLength;
    this.maxMessageSize = options.maxMessageSize ?? DEFAULTS.maxMessageSize;
    this.maxDataLineLength = options.maxDataLineLength ?? DEFAULTS.maxDataLineLength;
    this.bareNewlines = options.bareNewlines ?? DEFAULTS.bareNewlines;
    this.allowBareLfInCommands = options.allowBareLfInCommands ?? DEFAULTS.allowBareLfInCommands;
    this.maxErrors = options.maxErrors ?? DEFAULTS.maxErrors;
    this.maxAuthFailures = options.maxAuthFailures ?? DEFAULTS.maxAuthFailures;
    this.maxCommandsBeforeHelo = options.maxCommandsBeforeHelo ?? DEFAULTS.maxCommandsBeforeHelo;
    this.lmtp = options.lmtp ?? false;
    this.bodyHighWaterMark = options.bodyHighWaterMark ?? DEFAULTS.bodyHighWaterMark;
    this.disabledCommands = options.disabledCommands;
    this.randomBytes = options.randomBytes ?? cryptoRandomBytes;
    this.now = options.now ?? Date.now;

    this.logHandler = options.logHandler;
    this.messageReceivedHandler = options.messageReceivedHandler;
    this.validateSenderHandler = options.validateSenderHandler;
    this.validateRecipientHandler = options.validateRecipientHandler;
    this.validateAuthenticationHandler = options.validateAuthenticationHandler;
    this.lookupPassword = options.lookupPassword;
    this.smtpVerbFilter = options.smtpVerbFilter;
    this.tlsHandler = options.tlsHandler;
    this.getAuthenticationMechanismsHandler = options.getAuthenticationMechanismsHandler;
    this.onCommand = options.onCommand;
    this.onReply = options.onReply;

    this.session = {
      hostname: this.hostname,
      helo: undefined,
      heloVerb: undefined,
      remoteAddress: options.remoteAddress,
      remotePort: options.remotePort,
      localAddress: options.localAddress,
      localPort: options.localPort,
      secure: options.secure ?? false,
      tls: undefined,
      user: undefined,
      transactionCount: 0,
      extra: {},
    };
    this.framer = new Framer({
      maxLineLength: Math.max(this.maximumLineLength, this.maximumAuthLineLength),
      hardLineCap: options.hardLineCap ?? DEFAULTS.hardLineCap,
    });
    this.registry = Registry.for(options);
  }

  // ---- Extension API -------------------------------------------------------------------------

  /** Registers an extension: its EHLO keyword, verbs and MAIL/RCPT parameters. */
  use(extension: Extension): this {
    if (!this.ownsRegistry) {
      this.registry = this.registry.clone();
      this.ownsRegistry = true;
    }
    this.registry.add(extension);
    return this;
  }

  hasExtension(name: string): boolean {
    // Names are registered upper case: the exact lookup answers the usual caller without upper-casing.
    const { names } = this.registry;
    return names.has(name) || names.has(name.toUpperCase());
  }

  /** The open transaction's envelope, if any. */
  get envelope(): Envelope | undefined {
    return this.transaction?.envelope;
  }

  /** Enhanced status codes go on the wire while ENHANCEDSTATUSCODES is on (RFC 2034). */
  get enhancedStatusCodes(): boolean {
    return this.hasExtension('ENHANCEDSTATUSCODES');
  }

  /** SASL mechanisms usable now: those the hooks can verify, or what the mechanisms hook says. */
  authenticationMechanisms(): string[] {
    const names: string[] = [];
    for (const mechanism of this.registry.mechanisms.values()) {
      if (this.validateAuthenticationHandler) names.push(mechanism.name);
      else if (this.lookupPassword && !mechanism.needsValidateHook) names.push(mechanism.name);
    }
    if (this.getAuthenticationMechanismsHandler) {
      // The hook picks and orders among the usable ones: a mechanism no hook can verify stays off.
      return this.getAuthenticationMechanismsHandler(this.session)
        .map((name) => name.toUpperCase())
        .filter((name) => names.includes(name));
    }
    return names;
  }

  // ---- Driver API ----------------------------------------------------------------------------

  /** The 220 greeting; the session now expects EHLO/HELO (LHLO). */
  start(): Reply {
    this.state = State.Establish;
    const greeting = this.greeting();
    this.observeReply(greeting);
    return greeting;
  }

  /** The 220 greeting reply itself (also what XCLIENT answers). */
  greeting(): Reply {
    return this.lmtp
      ? reply('LmtpGreeting', this.hostname, this.ident)
      : reply('Greeting', this.hostname, this.ident);
  }

  /** Back to the state right after the greeting, forgetting the client's identity (XCLIENT). */
  restart(): void {
    this.resetTransaction();
    this.session.helo = undefined;
    this.session.heloVerb = undefined;
    this.state = State.Establish;
  }

  /** Queues bytes from the client (cleartext). Call `run()` to process them. */
  receive(chunk: Buffer): void {
    // While STARTTLS waits for the handshake, anything received is pre-TLS plaintext: drop it (D18).
    if (this.state === State.Done || this.state === State.StartTls) return;
    this.framer.push(chunk);
  }

  /**
   * Processes queued input as far as it can without waiting; returns the replies to send. With
   * `maxReplies`, it stops once that many replies are queued (`more` is then true), so that a
   * driver can send them and see whether its reader keeps up before it goes on: a client that
   * pipelines commands without reading replies is then held back by backpressure.
   */
  run(maxReplies = NO_REPLY_LIMIT): RunResult {
    if (this.pumping) return NESTED_RUN;
    const action = this.advance(maxReplies);
    return { output: this.renderReplies(), pending: this.waiting, action, more: this.stoppedEarly };
  }

  /**
   * `run()` with the replies as a string, for drivers that write text to their connection (no
   * Buffer per batch; `socket.write(text)` encodes it as UTF-8).
   */
  runText(maxReplies = NO_REPLY_LIMIT): TextRunResult {
    if (this.pumping) return NESTED_RUN;
    const action = this.advance(maxReplies);
    return { output: this.renderText(), pending: this.waiting, action, more: this.stoppedEarly };
  }

  /** run()'s work before rendering: process input, then take the action (starttls is reported once). */
  private advance(maxReplies: number): RunResult['action'] {
    this.replyBudget = Math.max(1, Math.min(maxReplies, NO_REPLY_LIMIT)); // at least one step
    this.stoppedEarly = false;
    this.pump();
    this.replyBudget = NO_REPLY_LIMIT;
    const action = this.action;
    if (action === 'starttls') this.action = null;
    return action;
  }

  /** Bytes queued and not yet processed. */
  get bufferedInput(): number {
    return this.framer.buffered;
  }

  /** True while a hook or the message consumer is being waited for. */
  get busy(): boolean {
    return this.waiting !== null;
  }

  /** The driver finished the TLS handshake after STARTTLS: back to the state after the greeting (RFC 3207 §4.2). */
  tlsStarted(info: TlsInfo = {}): void {
    this.session.secure = true;
    this.session.tls = info;
    this.forgetClient();
    this.state = State.Establish;
    this.log('TLS established');
  }

  /** The TLS handshake failed or timed out: the session is over. */
  tlsFailed(): void {
    this.finish();
  }

  /** Implicit TLS: the driver reports the handshake details of a connection that started under TLS. */
  setTlsInfo(info: TlsInfo): void {
    this.session.secure = true;
    this.session.tls = info;
  }

  /**
   * Ends the session from the server side with a 421 (timeout, shutdown, connection limit): returns
   * the reply bytes to send before closing. Any message in progress is abandoned, never accepted.
   */
  closeWith(id: 'Timeout' | 'ShuttingDown' | 'TooManyConnections'): Buffer {
    this.abortMessage(`session closed: ${id}`);
    this.emit(reply(id, this.hostname), false);
    this.finish();
    return this.renderReplies() ?? Buffer.alloc(0);
  }

  /** Graceful shutdown: close now if idle, or right after the message in progress is answered. */
  shutdown(): void {
    if (this.state === State.Done) return;
    if (this.transaction?.message !== undefined || this.waiting !== null) this.shutdownRequested = true;
    else {
      this.emit(reply('ShuttingDown', this.hostname), false);
      this.finish();
    }
  }

  /** The client went away: abandon everything, wake hooks through their AbortSignal. */
  abort(reason: Error = new Error('client disconnected')): void {
    this.abortMessage(reason);
    this.state = State.Done;
    this.framer.clear();
  }

  /** Waits until no hook is pending, then returns the replies produced meanwhile (for parse-style callers). */
  async flush(): Promise<Reply[]> {
    while (this.waiting !== null) await this.waiting;
    return this.replies.splice(0);
  }

  // ---- MailHog-shaped API --------------------------------------------------------------------

  /**
   * Handles one command line from `input` (or, in DATA, the text up to and including the final
   * dot) and returns the rest. Callers loop while the rest still holds a complete line.
   */
  parse(input: string): ParseResult<string>;
  parse(input: Buffer): ParseResult<Buffer>;
  parse<T extends string | Buffer>(input: T): ParseResult<T> {
    // From inside a hook (a run is under way) nothing is taken: the input comes back untouched.
    if (this.pumping) return { rest: input, reply: null, replies: [], pending: this.waiting };
    const asString = typeof input === 'string';
    this.framer.push(asString ? Buffer.from(input, 'utf8') : (input as Buffer));
    if (this.waiting === null) {
      if (this.framer.readingText) this.pump(true);
      else {
        const frame = this.framer.next();
        if (frame !== undefined) this.exclusively(() => this.handleFrame(frame));
      }
    }
    const restBytes = this.framer.takeRest();
    const replies = this.replies.splice(0);
    const rest = (asString ? restBytes.toString('utf8') : restBytes) as T;
    return { rest, reply: replies[0] ?? null, replies, pending: this.waiting };
  }

  /** One command line (line ending optional; CR/LF runs at both ends are removed). */
  processCommand(line: string | Buffer): MaybePromise<Reply | null> {
    // Bytes are checked as bytes (decodeLine refuses bad UTF-8): no lossy decoding on the way in.
    const bytes = typeof line === 'string' ? Buffer.from(line, 'utf8') : line;
    let start = 0;
    let end = bytes.length;
    while (start < end && (bytes[start] === 0x0d || bytes[start] === 0x0a)) start++;
    while (end > start && (bytes[end - 1] === 0x0d || bytes[end - 1] === 0x0a)) end--;
    this.exclusively(() => this.handleLine(bytes.subarray(start, end), false));
    return this.firstReply();
  }

  /**
   * A chunk of message text of any size; returns the reply once the final dot has been seen. Bytes
   * after the final dot stay queued for the next `run()` or `parse()` (not `processCommand()`,
   * which would overtake them).
   */
  processData(data: string | Buffer): MaybePromise<Reply | null> {
    if (!this.framer.readingText) throw new Error('processData() outside DATA');
    this.framer.push(typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
    this.pump(true);
    return this.firstReply();
  }

  private firstReply(): MaybePromise<Reply | null> {
    if (this.waiting !== null) return this.flush().then((replies) => replies[0] ?? null);
    return this.replies.splice(0)[0] ?? null;
  }

  // ---- The loop ------------------------------------------------------------------------------

  /** Runs one step of the MailHog-shaped API with the re-entrancy guard of `pump()` set. */
  private exclusively(step: () => void): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      step();
    } finally {
      this.pumping = false;
    }
  }

  private pump(textOnly = false): void {
    // A hook that calls run() (or parse()) from inside must not start on the commands behind its
    // own: they would be answered first. The outer loop goes on with them once the hook returns.
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.waiting === null && this.state !== State.Done && this.state !== State.StartTls) {
        if (textOnly && !this.framer.readingText) return;
        if (this.replies.length >= this.replyBudget) {
          this.stoppedEarly = true;
          return;
        }
        const frame = this.framer.next();
        if (frame === undefined) return;
        this.handleFrame(frame);
      }
    } finally {
      this.pumping = false;
    }
  }

  private handleFrame(frame: Frame): void {
    switch (frame.type) {
      case FrameType.Line:
        return this.handleLine(frame.line, frame.bareLf);
      case FrameType.LineTooLong:
        if (this.state === State.Auth) this.endSasl();
        return this.emit(reply('LineTooLong'));
      case FrameType.Overflow:
        this.emit(reply('LineTooLongFatal', this.hostname), false);
        return this.finish();
      case FrameType.Body:
        return this.handleText(frame.chunk);
      case FrameType.BodyEnd:
        return this.handleTextEnd();
    }
  }

  private handleLine(bytes: Buffer, bareLf: boolean): void {
    if (this.state === State.Done || this.state === State.StartTls) return;
    if (bareLf && !this.allowBareLfInCommands) {
      if (this.state !== State.Auth) {
        // A refused BDAT line still claims its chunk (RFC 3030 §2): those bytes are never commands.
        const command = parseCommand(bytes.toString('latin1'));
        this.registry.verbs.get(command.verb)?.frame?.(command, this);
      }
      if (this.state === State.Auth) this.endSasl(); // the refused line was the SASL response
      return this.emit(reply('BareLfInCommand'));
    }
    if (this.state === State.Auth) return this.handleSaslResponse(bytes);
    const decoded = decodeLine(bytes);
    if ('problem' in decoded) {
      this.log(`refused a command line with ${decoded.problem} bytes`);
      return this.emit(reply('BadCharacters'));
    }
    const command = parseCommand(decoded.text);
    if (this.onCommand !== undefined) this.observe('onCommand', this.onCommand, command);
    if (this.logHandler) this.log(`C: ${command.verb === 'AUTH' ? redactAuth(command) : command.orig}`);
    const definition = this.registry.verbs.get(command.verb);
    definition?.frame?.(command, this);
    if (bytes.length > this.maximumLineLength && !definition?.longLine)
      return this.emit(reply('LineTooLong'));
    if (isHttpRequestLine(command.verb, command.args)) {
      this.emit(reply('HttpRefused'), false);
      return this.finish();
    }
    if (decoded.nonAscii && !UTF8_VERBS.has(command.verb) && definition === undefined) {
      return this.emit(reply('BadCharacters'));
    }
    if (this.state === State.Establish && !isHello(command.verb) && this.maxCommandsBeforeHelo > 0) {
      if (++this.commandsBeforeHelo > this.maxCommandsBeforeHelo) {
        this.emit(reply('TooManyErrors', this.hostname), false);
        return this.finish();
      }
    }
    const filter = this.smtpVerbFilter;
    if (filter === undefined) return this.dispatch(command, definition);
    this.after(
      this.call(() => filter(command, this.session)),
      (answer) => (answer ? this.emit(answer) : this.dispatch(command, definition)),
    );
  }

  /** Checks the transition table, TLS and auth policy, then runs the command's handler. */
  private dispatch(command: Command, definition: VerbDefinition | undefined): void {
    const { verb } = command;
    const rule = TRANSITION_RULES.get(verb);
    if (verb === '' || (rule === undefined && definition === undefined) || isWrongHello(verb, this.lmtp)) {
      return this.emit(reply(UNIMPLEMENTED_VERBS.has(verb) ? 'NotImplemented' : 'Unrecognized'));
    }
    let disabled: boolean;
    try {
      disabled = this.isDisabled(verb);
    } catch (error) {
      return this.hookFailed(error); // disabledCommands is a hook too
    }
    if (disabled) return this.emit(reply('NotImplemented'));
    if (
      this.requireTls &&
      !this.session.secure &&
      !ALLOWED_BEFORE_TLS.has(verb) &&
      !definition?.allowedBeforeTls
    ) {
      return this.emit(reply('MustIssueStartTls'));
    }
    const allowed = definition?.from ?? rule?.from;
    if (allowed !== undefined ? !allowed.includes(this.state) : !readsCommands(this.state)) {
      const error = sequenceError(verb, this.state);
      const text = error === 'helo-first' && this.lmtp ? 'send LHLO first' : SEQUENCE_TEXT[error];
      return this.emit(reply('BadSequence', text));
    }
    if (definition !== undefined) {
      return this.after(
        this.call(() => definition.handle(command, this)),
        (answer) => answer && this.emit(answer),
      );
    }
    switch (verb) {
      case 'HELO':
      case 'EHLO':
      case 'LHLO':
        return this.hello(command);
      case 'MAIL':
        return this.mail(command);
      case 'RCPT':
        return this.rcpt(command);
      case 'DATA':
        return this.data(command);
      case 'RSET':
        if (command.args !== '') return this.emit(reply('SyntaxError', 'RSET takes no arguments'));
        this.resetTransaction();
        return this.emit(reply('Ok'));
      case 'NOOP':
        return this.emit(reply('Ok'));
      case 'QUIT':
        this.emit(reply('Bye'), false);
        return this.finish();
      case 'HELP': {
        let verbs: string[];
        try {
          verbs = this.offeredVerbs();
        } catch (error) {
          return this.hookFailed(error);
        }
        return this.emit(reply('Help', verbs.join(' ')));
      }
      case 'VRFY':
        if (command.args === '') return this.emit(reply('SyntaxError', 'VRFY needs an argument'));
        return this.emit(reply('CannotVrfy'));
      default:
        return this.emit(reply('NotImplemented'));
    }
  }

  // ---- Commands ------------------------------------------------------------------------------

  private hello(command: Command): void {
    const { verb, args } = command;
    if (args === '') return this.emit(reply('HeloSyntax', verb));
    const { session } = this;
    const before = { helo: session.helo, heloVerb: session.heloVerb };
    // The hooks behind the keywords (mechanisms, disabledCommands) see the new identity; when one
    // fails, the 451 leaves the session as it was (RFC 5321 §4.1.4), transaction included.
    session.helo = args;
    session.heloVerb = verb as 'HELO' | 'EHLO' | 'LHLO';
    let answer: Reply;
    if (verb === 'HELO') answer = reply('Hello', this.hostname, args);
    else {
      const lines = [`${this.hostname} Hello ${args}`];
      try {
        for (const extension of this.registry.extensions) {
          if (this.switchedOff(extension)) continue;
          const keywords = extension.ehlo?.(this); // may call a hook (the mechanisms list)
          if (keywords === undefined) continue;
          if (typeof keywords === 'string') lines.push(keywords);
          else lines.push(...keywords);
        }
      } catch (error) {
        session.helo = before.helo;
        session.heloVerb = before.heloVerb;
        return this.hookFailed(error);
      }
      answer = reply('Ehlo', lines);
    }
    this.resetTransaction();
    this.state = State.Mail;
    this.emit(answer);
  }

  private mail(command: Command): void {
    if (this.requireAuth && this.session.user === undefined) return this.emit(reply('AuthRequired'));
    const parsed = parsePathArgument(
      command.args,
      this.rejectBrokenMailSyntax ? MAIL_PATH_STRICT : MAIL_PATH_LENIENT,
    );
    if (!parsed.ok)
      return this.emit(reply(parsed.problem === 'command' ? 'MailCommandSyntax' : 'BadSenderSyntax'));
    const envelope: Envelope = {
      mailFrom: { address: parsed.path.address, params: {} },
      rcptTo: [],
      bodyType: '7BIT',
      smtputf8: false,
      requireTls: false,
      transfer: 'DATA',
    };
    const refused = this.applyParameters(
      parsed.parameters,
      this.registry.mailParameters,
      { envelope },
      envelope.mailFrom.params,
    );
    if (refused) return this.emit(refused);
    if (parsed.path.nonAscii && !envelope.smtputf8) return this.emit(reply('NonAsciiAddress'));
    const accept = (answer = reply('SenderOk', displayPath(parsed.path))): void => {
      this.transaction = { envelope, rcptAttempts: 0, message: undefined };
      this.state = State.Rcpt;
      this.emit(answer);
    };
    const validate = this.validateSenderHandler;
    if (validate === undefined) return accept();
    this.after(
      this.call(() => validate(envelope.mailFrom, this.session)),
      (answer) => this.decide(answer, accept, () => reply('SenderRejected', displayPath(parsed.path))),
    );
  }

  private rcpt(command: Command): void {
    const transaction = this.transaction as Transaction;
    const { envelope } = transaction;
    transaction.rcptAttempts++;
    if (this.maximumRecipients >= 0 && envelope.rcptTo.length >= this.maximumRecipients) {
      // Not counted as an error: a pipelining client sends the rest later (§4.5.3.1.10; Postfix too).
      return this.emit(reply('TooManyRecipients'), false);
    }
    const parsed = parsePathArgument(
      command.args,
      RCPT_PATH[(this.rejectBrokenRcptSyntax ? 2 : 0) + (envelope.smtputf8 ? 1 : 0)],
    );
    if (!parsed.ok) return this.emit(reply(RCPT_PROBLEM_REPLY[parsed.problem]));
    const recipient: Envelope['rcptTo'][number] = { address: parsed.path.address, params: {} };
    const refused = this.applyParameters(
      parsed.parameters,
      this.registry.rcptParameters,
      { envelope, recipient },
      recipient.params,
    );
    if (refused) return this.emit(refused);
    const accept = (answer = reply('RecipientOk', displayPath(parsed.path))): void => {
      envelope.rcptTo.push(recipient);
      this.emit(answer);
    };
    const validate = this.validateRecipientHandler;
    if (validate === undefined) return accept();
    this.after(
      this.call(() => validate(recipient, this.session, envelope)),
      (answer) => this.decide(answer, accept, () => reply('RecipientRejected', displayPath(parsed.path))),
    );
  }

  private data(command: Command): void {
    if (command.args !== '') return this.emit(reply('SyntaxError', 'DATA takes no arguments'));
    const transaction = this.transaction as Transaction;
    const noRecipients = this.noRecipientsRefusal();
    if (noRecipients !== undefined) return this.emit(noRecipients);
    if (transaction.envelope.bodyType === 'BINARYMIME') {
      return this.emit(reply('BadSequence', 'BODY=BINARYMIME requires BDAT'));
    }
    this.state = State.Data;
    this.framer.startDotData();
    this.emit(reply('StartMailInput'));
    this.beginMessage('DATA');
  }

  /** Runs every ESMTP parameter through its registered handler; returns the refusal, if any. */
  private applyParameters(
    text: string,
    handlers: Map<string, ParameterHandler>,
    target: ParameterTarget,
    record: Record<string, string | true>,
  ): Reply | undefined {
    if (text === '') return undefined; // no parameters: the usual case
    const parsed = parseParameters(text);
    if (!parsed.ok) return reply('SyntaxError', `bad parameter ${parsed.keyword}`);
    for (const [key, value] of parsed.params) {
      const handler = handlers.get(key);
      if (handler === undefined) return reply('UnknownParameter', key);
      const refused = handler(value, target, this);
      if (refused) return refused;
      record[key] = value;
    }
    return undefined;
  }

  /** A validate hook's answer: false → the default refusal, a Reply → itself, anything else → accept. */
  private decide(
    answer: boolean | Reply | void | undefined,
    accept: (answer?: Reply) => void,
    refusal: () => Reply,
  ): void {
    if (answer === false) return this.emit(refusal());
    if (isReply(answer)) {
      // A hook may accept with its own words: run the acceptance with its reply instead.
      if (isSuccess(answer)) return accept(answer);
      return this.emit(isIntermediate(answer) ? this.intermediateFromHook(answer) : answer);
    }
    accept();
  }

  // ---- Message text (DATA and BDAT) ------------------------------------------------------------

  /** Opens the message channel and calls the message hook (after 354, or at the first BDAT). */
  private beginMessage(transfer: 'DATA' | 'BDAT'): void {
    const transaction = this.transaction as Transaction;
    transaction.envelope.transfer = transfer;
    const body = new MessageBody(this.bodyHighWaterMark);
    const inspector =
      transfer === 'DATA' && (this.bareNewlines === 'reject' || this.maxDataLineLength > 0)
        ? new TextInspector(this.bareNewlines === 'reject', this.maxDataLineLength)
        : undefined;
    const message: MessageInProgress = {
      body,
      controller: new LazyAbort(),
      outcome: undefined,
      settled: undefined,
      failure: undefined,
      inspector,
    };
    transaction.message = message;
    const hook = this.messageReceivedHandler;
    if (hook === undefined) {
      body.discard();
      message.outcome = {};
      return;
    }
    let result: MaybePromise<MessageResult>;
    try {
      result = hook(new HookMessage(transaction.envelope, this.session, body, message.controller));
    } catch (error) {
      result = Promise.reject(error);
    }
    if (!isPromise(result)) {
      message.outcome = { value: result };
      drainUnclaimed(body);
      return;
    }
    message.settled = result.then(
      (value) => {
        message.outcome = { value };
        drainUnclaimed(body);
      },
      (error: unknown) => {
        message.outcome = { error };
        body.discard();
      },
    );
  }

  private handleText(chunk: Buffer): void {
    const message = this.transaction?.message;
    if (message === undefined || (this.chunk !== undefined && !this.chunk.accepted)) return; // a refused BDAT chunk
    const { body } = message;
    if (message.failure === undefined) {
      if (this.maxMessageSize > 0 && body.bytesReceived + chunk.length > this.maxMessageSize) {
        this.failMessage(message, reply('MessageTooBig'));
      } else if (message.inspector !== undefined) {
        const problem = message.inspector.inspect(chunk);
        if (problem === 'bare-newline') this.failMessage(message, reply('BareNewline'));
        else if (problem === 'long-line')
          this.failMessage(message, reply('DataLineTooLong', this.maxDataLineLength));
      }
    }
    if (!body.push(chunk)) this.after(body.whenDrained(), () => undefined);
  }

  /** The message will be refused at its end; its readers see an error now and the rest is dropped. */
  private failMessage(message: MessageInProgress, refusal: Reply): void {
    message.failure = refusal;
    this.log(`message refused: ${refusal.toString()}`);
    message.body.fail(new SmtpReplyError(refusal));
    message.controller.abort(new SmtpReplyError(refusal));
  }

  private handleTextEnd(): void {
    const chunk = this.chunk;
    this.chunk = undefined;
    const message = this.transaction?.message;
    if (chunk !== undefined && !chunk.accepted) {
      // The refusal was sent with the BDAT command, and it failed the transaction (RFC 3030 §2): no
      // later chunk may complete a message with a hole, and after a refused LAST the client starts
      // over with MAIL (Postfix resets the same way). Chunks already pipelined find no transaction.
      if (this.transaction !== undefined) this.abandonTransaction();
      return;
    }
    if (message === undefined) return;
    if (chunk !== undefined && !chunk.last) {
      // RFC 3030 §2: a failed chunk fails the transaction, answered once, also in LMTP (replies per
      // recipient answer a whole message only, RFC 2033 §4.2).
      if (message.failure !== undefined) return this.closeTransaction([message.failure]);
      return this.emit(reply('ChunkReceived', chunk.size), false);
    }
    message.body.end();
    if (message.outcome !== undefined || message.settled === undefined) return this.answerMessage(message);
    this.after(message.settled, () => this.answerMessage(message));
  }

  /** Sends the answer to a complete message (one per recipient in LMTP) and ends the transaction. */
  private answerMessage(message: MessageInProgress): void {
    const transaction = this.transaction as Transaction;
    const recipients = transaction.envelope.rcptTo;
    const outcome = message.outcome ?? {};
    let answers: Reply[];
    if (message.failure !== undefined) {
      answers = [message.failure];
    } else if ('error' in outcome) {
      const error = outcome.error;
      this.log(`message hook failed: ${error instanceof Error ? error.message : String(error)}`);
      answers = [error instanceof SmtpReplyError ? error.reply : reply('StorageFailed')];
    } else {
      const value = outcome.value;
      if (!this.lmtp && !Array.isArray(value)) {
        // The usual case (one answer for the message), without the per-recipient lists below.
        answers = [this.messageAnswer(value as string | Reply | undefined, undefined)];
      } else {
        // One queue id per message, even a generated one. In LMTP each reply names its own recipient:
        // a single answer (or a short list's last one) stands for the remaining recipients.
        let generated: string | undefined;
        const ids = (
          Array.isArray(value) && value.length > 0 ? value : [Array.isArray(value) ? undefined : value]
        ).map((item) =>
          isReply(item) || (typeof item === 'string' && item !== '')
            ? item
            : (generated ??= this.generateId()),
        );
        const list = this.lmtp ? recipients.map((_, i) => ids[Math.min(i, ids.length - 1)]) : ids;
        answers = list.map((item, i) => this.messageAnswer(item, recipients[i]?.address));
      }
    }
    if (this.lmtp) {
      // RFC 2033 §4.2: one reply per accepted recipient, in RCPT order.
      answers = recipients.map((recipient, i) => answers[Math.min(i, answers.length - 1)] ?? reply('Ok'));
    } else answers = answers.slice(0, 1);
    this.closeTransaction(answers);
  }

  /** Sends the transaction's last answers and waits for the next MAIL (or closes, if asked to). */
  private closeTransaction(answers: Reply[]): void {
    if (answers.some(isSuccess)) {
      this.session.transactionCount++;
      // A delivered message forgives earlier mistakes, as Postfix does: a client that reuses its
      // connection for many messages is not cut off by refusals spread over all of them.
      this.errorCount = 0;
    }
    this.transaction = undefined;
    this.state = State.Mail;
    for (const answer of answers) this.emit(answer, false);
    if (this.shutdownRequested && (this.state as State) !== State.Done) {
      // (an answer may have been a 421, which closed the session already)
      this.emit(reply('ShuttingDown', this.hostname), false);
      this.finish();
    }
  }

  private messageAnswer(value: string | Reply | void | undefined, recipient: string | undefined): Reply {
    if (isReply(value)) return isIntermediate(value) ? this.intermediateFromHook(value) : value;
    const id = typeof value === 'string' && value !== '' ? value : this.generateId();
    return this.lmtp && recipient !== undefined ? reply('LmtpDelivered', recipient, id) : reply('Queued', id);
  }

  private generateId(): string {
    // Time, then a counter, in upper-case base 36; the time part is rendered once per millisecond.
    const now = this.now();
    if (now !== idTime) {
      idTime = now;
      idPrefix = now.toString(36).toUpperCase();
    }
    return idPrefix + base36(++idCounter);
  }

  // ---- Hooks for extensions -------------------------------------------------------------------

  /**
   * DATA and BDAT without an accepted recipient: `503` when no RCPT was tried (and always in LMTP,
   * RFC 2033 §4.2), `554 5.5.1 no valid recipients` when every one was refused (RFC 5321
   * §3.3, Postfix); undefined when there is a recipient (or no transaction at all).
   */
  noRecipientsRefusal(): Reply | undefined {
    const transaction = this.transaction;
    if (transaction === undefined || transaction.envelope.rcptTo.length > 0) return undefined;
    return transaction.rcptAttempts === 0 || this.lmtp
      ? reply('BadSequence', SEQUENCE_TEXT['need-rcpt'])
      : reply('NoValidRecipients');
  }

  /**
   * Ends the open transaction and drops its message in progress, back to waiting for MAIL: a BDAT
   * that failed leaves a hole in the message (RFC 3030 §2), so no later chunk may complete it.
   */
  abandonTransaction(): void {
    if (this.transaction !== undefined && readsCommands(this.state)) this.resetTransaction();
  }

  /**
   * BDAT support (used by the CHUNKING extension): the next `size` bytes belong to a chunk; they
   * are consumed even if the command is then refused (RFC 3030 §2). Call from a verb's `frame`.
   */
  expectChunk(size: number, last: boolean): void {
    this.chunk = { size, last, accepted: false };
    this.framer.startChunk(size);
  }

  /** BDAT support: the current chunk goes into the transaction's message (opened on the first chunk). */
  acceptChunk(): void {
    const chunk = this.chunk as ChunkInProgress;
    const transaction = this.transaction as Transaction;
    if (transaction.message === undefined) {
      this.state = State.Bdat;
      this.beginMessage('BDAT');
    }
    chunk.accepted = true;
  }

  /** STARTTLS support: sends 220, discards every byte pipelined after the command (CVE-2011-0411). */
  beginTls(): void {
    this.emit(reply('ReadyToStartTls'), false);
    this.state = State.StartTls;
    const dropped = this.framer.clear();
    if (dropped > 0) this.log(`discarded ${dropped} bytes sent after STARTTLS`);
    this.action = 'starttls';
  }

  /** AUTH support: runs a SASL exchange from its first step (RFC 4954 §4). */
  beginSasl(mechanismName: string, initialResponse: Buffer | undefined): void {
    const mechanism = this.registry.mechanisms.get(mechanismName);
    if (mechanism === undefined) return this.emit(reply('MechanismUnsupported'));
    this.sasl = { next: undefined, failed: false };
    this.state = State.Auth;
    this.saslStep(
      mechanism.start(initialResponse, {
        hostname: this.hostname,
        randomBytes: this.randomBytes,
        now: this.now,
      }),
    );
  }

  /** The next line of a SASL exchange is always its response: `*` cancels (D13). */
  private handleSaslResponse(bytes: Buffer): void {
    const sasl = this.sasl as NonNullable<Protocol['sasl']>;
    const text = bytes.toString('latin1').trim();
    if (text === '*') {
      this.endSasl();
      return this.emit(reply('AuthCancelled'));
    }
    if (sasl.failed) {
      // XOAUTH2: the client acknowledged the error challenge.
      this.endSasl();
      return this.authFailed();
    }
    const response = decodeSaslBase64(text);
    if (response === undefined || sasl.next === undefined) {
      this.endSasl();
      return this.emit(reply('BadBase64'));
    }
    this.saslStep(sasl.next(response));
  }

  private saslStep(step: SaslStep): void {
    const sasl = this.sasl as NonNullable<Protocol['sasl']>;
    if (step.kind === 'challenge') {
      sasl.next = step.next;
      return this.emit(reply('AuthChallenge', step.challenge.toString('base64')), false);
    }
    if (step.kind === 'malformed') {
      this.endSasl();
      return this.emit(reply('SyntaxError', step.detail));
    }
    const { credentials } = step;
    this.after(
      this.call(() => this.verifyCredentials(credentials)),
      (result) => {
        if (result === true || (typeof result === 'object' && result !== null && !isReply(result))) {
          this.endSasl();
          this.session.user = result === true ? credentials.username : result.user;
          this.log(`authenticated as ${this.session.user} (${credentials.method})`);
          return this.emit(reply('AuthOk'));
        }
        if (isReply(result)) {
          this.endSasl();
          if (result.code === 235) this.session.user = credentials.username;
          return this.emit(result);
        }
        if (step.onFailure !== undefined) {
          sasl.failed = true;
          sasl.next = undefined;
          return this.emit(reply('AuthChallenge', step.onFailure.challenge.toString('base64')), false);
        }
        this.endSasl();
        this.authFailed();
      },
    );
  }

  private verifyCredentials(credentials: AuthCredentials): MaybePromise<AuthResult> {
    if (this.validateAuthenticationHandler)
      return this.validateAuthenticationHandler(credentials, this.session);
    const lookup = this.lookupPassword;
    // A password proves who the client is, not that it may act as someone else (RFC 4616 §2): asking
    // for another identity needs a validate hook that decides it.
    if (lookup === undefined || credentials.authzid !== undefined) return false;
    return then(lookup(credentials.username, this.session), (password) =>
      typeof password === 'string' ? credentials.validatePassword(password) : false,
    );
  }

  private authFailed(): void {
    this.authFailures++;
    this.emit(reply('AuthFailed'));
    if (this.maxAuthFailures > 0 && this.authFailures >= this.maxAuthFailures && this.state !== State.Done) {
      this.emit(reply('TooManyAuthFailures', this.hostname), false);
      this.finish();
    }
  }

  private endSasl(): void {
    this.sasl = undefined;
    if (this.state === State.Auth) this.state = State.Mail;
  }

  // ---- Plumbing ------------------------------------------------------------------------------

  /** Queues a reply. Errors count towards `maxErrors` unless `countError` is false. */
  emit(answer: Reply, countError = true): void {
    this.replies.push(answer);
    this.observeReply(answer);
    if (answer.code === 421 || answer.code === 221) {
      // "Closing transmission channel" (RFC 5321 §3.8, §4.2.2), whoever chose the reply: a hook's
      // 421 ends the session as the core's own do.
      if (this.state !== State.Done) this.finish();
      return;
    }
    if (!countError || answer.code < 400 || this.state === State.Done) return;
    this.errorCount++;
    if (this.maxErrors > 0 && this.errorCount >= this.maxErrors) {
      const closing = reply('TooManyErrors', this.hostname);
      this.replies.push(closing);
      this.observeReply(closing);
      this.finish();
    }
  }

  private observeReply(answer: Reply): void {
    this.replyCount++;
    if (this.onReply !== undefined) this.observe('onReply', this.onReply, answer);
    if (this.logHandler) this.log(`S: ${answer.toString()}`);
  }

  /** Observers only watch: one that throws is told to the log and changes nothing in the session. */
  private observe<T>(name: string, observer: (value: T, session: SessionInfo) => void, value: T): void {
    try {
      observer(value, this.session);
    } catch (error) {
      this.log(`${name} threw: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  private renderReplies(): Buffer | null {
    const text = this.renderText();
    return text === null ? null : Buffer.from(text, 'utf8');
  }

  private renderText(): string | null {
    const { replies } = this;
    if (replies.length === 0) return null;
    const enhanced = this.enhancedStatusCodes;
    let text = replies[0].render(enhanced);
    for (let i = 1; i < replies.length; i++) text += replies[i].render(enhanced);
    replies.length = 0;
    return text;
  }

  /** Runs `next` with the value now, or once the Promise settles (stopping all input meanwhile). */
  private after<T>(value: MaybePromise<T>, next: (value: T) => unknown): void {
    if (!isPromise(value)) {
      // A synchronous hook may have closed the session (shutdown(), closeWith()): its answer is moot.
      if (this.state !== State.Done) next(value);
      return;
    }
    this.waiting = value.then(
      (resolved) => {
        this.waiting = null;
        // Closed meanwhile (closeWith, abort, tlsFailed): the late answer changes nothing.
        if (this.state !== State.Done) next(resolved);
        if (this.shutdownRequested) this.shutdown(); // closes now unless still busy
      },
      (error: unknown) => {
        this.waiting = null;
        this.hookFailed(error);
        if (this.shutdownRequested) this.shutdown();
      },
    );
  }

  /** Calls a hook; a synchronous throw becomes a rejected Promise so both take one path. */
  private call<T>(hook: () => MaybePromise<T>): MaybePromise<T> {
    try {
      return hook();
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** A hook answered a command or a message with a 3xx: a bug in the hook, answered like a throw. */
  private intermediateFromHook(answer: Reply): Reply {
    this.log(`hook answered with an intermediate reply (${answer.toString()}): treated as a failure`);
    return reply('LocalError');
  }

  /** A hook threw or rejected: 451 4.3.0, logged; the session and its transaction go on. */
  private hookFailed(error: unknown): void {
    this.log(`hook failed: ${error instanceof Error ? error.message : String(error)}`);
    if (this.state === State.Auth) this.endSasl();
    if (this.state === State.Done) return;
    this.emit(reply('LocalError'));
  }

  private resetTransaction(): void {
    this.abortMessage('transaction reset');
    this.transaction = undefined;
    this.chunk = undefined;
    if (this.state !== State.Establish && this.state !== State.Invalid) this.state = State.Mail;
  }

  /** Abandons the message in progress, if any; `reason` is built only then (an Error's stack is costly). */
  private abortMessage(reason: string | Error): void {
    const message = this.transaction?.message;
    if (message === undefined) return;
    if (typeof reason === 'string') reason = new Error(reason);
    message.body.fail(reason);
    message.controller.abort(reason);
  }

  /** STARTTLS: forget everything learned from the client before TLS (RFC 3207 §4.2). */
  private forgetClient(): void {
    this.resetTransaction();
    this.sasl = undefined;
    this.session.helo = undefined;
    this.session.heloVerb = undefined;
    this.session.user = undefined;
    this.commandsBeforeHelo = 0;
  }

  private finish(): void {
    // QUIT, 421s, overflow mid-message: the message hook hears of it (body error, signal).
    this.abortMessage('session closed');
    this.state = State.Done;
    this.action = 'close';
    this.framer.clear();
  }

  /** A command switched off for this session by `disabledCommands`. */
  isDisabled(verb: string): boolean {
    const disabled = this.disabledCommands;
    if (disabled === undefined) return false;
    const list = typeof disabled === 'function' ? disabled(this.session) : disabled;
    for (const name of list) if (name.toUpperCase() === verb) return true;
    return false;
  }

  /** The extension, or one of its verbs, is switched off for this session (`disabledCommands`). */
  private switchedOff(extension: Extension): boolean {
    return (
      this.isDisabled(extension.name) || Object.keys(extension.verbs ?? {}).some((v) => this.isDisabled(v))
    );
  }

  /**
   * The verbs HELP lists: the core's own, and those of the extensions this session offers now (an
   * extension whose EHLO keyword stays silent, like STARTTLS without a TLS hook or under TLS, or
   * AUTH without a way to check credentials, has its verbs left out too).
   */
  private offeredVerbs(): string[] {
    const offered = new Set<string>();
    for (const extension of this.registry.extensions) {
      if (extension.verbs === undefined || this.switchedOff(extension)) continue;
      let silent: boolean;
      try {
        silent = extension.ehlo !== undefined && extension.ehlo(this) === undefined;
      } catch {
        silent = true; // a failing hook offers nothing
      }
      if (!silent) for (const verb of Object.keys(extension.verbs)) offered.add(verb.toUpperCase());
    }
    const core = Object.keys(TRANSITIONS).filter((verb) =>
      CORE_VERBS.has(verb) ? !isWrongHello(verb, this.lmtp) : offered.has(verb),
    );
    return [...core, ...[...offered].filter((verb) => !core.includes(verb))].filter(
      (verb) => !this.isDisabled(verb),
    );
  }

  private log(message: string): void {
    const logHandler = this.logHandler;
    if (logHandler === undefined) return;
    try {
      logHandler(message, this.state, this.session);
    } catch {
      // The log itself failed: there is nowhere left to tell, and the session must go on.
    }
  }
}

/** Once the message hook has answered, text nobody reads is drained (a claimed body keeps flowing). */
function drainUnclaimed(body: MessageBody): void {
  if (!body.claimed) body.discard();
}

/** 2xx: the hook accepted. */
function isSuccess(answer: Reply): boolean {
  return answer.code < 300;
}

/** 3xx: asks the client for more, which no validate or message hook can mean. */
function isIntermediate(answer: Reply): boolean {
  return answer.code >= 300 && answer.code < 400;
}

function isPromise<T>(value: MaybePromise<T>): value is Promise<T> {
  return typeof (value as Promise<T> | undefined)?.then === 'function';
}

function then<T, R>(value: MaybePromise<T>, next: (value: T) => R): MaybePromise<R> {
  return isPromise(value) ? value.then(next) : next(value);
}

function isHello(verb: string): boolean {
  return verb === 'EHLO' || verb === 'HELO' || verb === 'LHLO';
}

/** LMTP has LHLO instead of HELO/EHLO (RFC 2033 §4.1); SMTP has no LHLO. */
function isWrongHello(verb: string, lmtp: boolean): boolean {
  return lmtp ? verb === 'HELO' || verb === 'EHLO' : verb === 'LHLO';
}

function displayPath(path: ParsedPath): string {
  return path.address === '' ? '<>' : path.address;
}

/** AUTH lines are logged without their initial response (D14: never log secrets). */
function redactAuth(command: Command): string {
  const mechanism = command.args.split(/\s+/)[0] ?? '';
  return /\s/.test(command.args) ? `AUTH ${mechanism} <redacted>` : command.orig;
}

export type { ReplyId };

const RCPT_PROBLEM_REPLY: Readonly<Record<PathProblem, ReplyId>> = {
  command: 'RcptCommandSyntax',
  syntax: 'BadRecipientSyntax',
  'null-not-allowed': 'BadRecipientSyntax',
  'too-long': 'BadRecipientSyntax',
  'non-ascii': 'NonAsciiAddress',
};

// The four ways of reading a path, made once (not an options object per MAIL and RCPT).
const MAIL_PATH_LENIENT: PathOptions = { keyword: 'FROM', strict: false, utf8: true };
const MAIL_PATH_STRICT: PathOptions = { keyword: 'FROM', strict: true, utf8: true };
const RCPT_PATH: readonly PathOptions[] = [
  { keyword: 'TO', strict: false, utf8: false },
  { keyword: 'TO', strict: false, utf8: true },
  { keyword: 'TO', strict: true, utf8: false },
  { keyword: 'TO', strict: true, utf8: true },
];

// Generated ids: the time, rendered once per millisecond, then a counter of the whole process
// (per-session counters would give two sessions the same id within a millisecond).
let idCounter = 0;
let idTime = -1;
let idPrefix = '';

const BASE36 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ';

/** A non-negative integer in upper-case base 36 (Number#toString(36) goes through floating point). */
function base36(value: number): string {
  let out = '';
  do {
    out = BASE36[value % 36] + out;
    value = Math.floor(value / 36);
  } while (value > 0);
  return out;
}
