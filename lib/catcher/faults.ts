import { Reply, type Command, type SessionInfo, type SmtpSessionStream } from '../index';
import type { FaultOptions } from './options';

/**
 * Fault injection for the catcher (MailHog's "Jim", Mailpit's chaos): refusals with chosen codes,
 * at a rate or for chosen addresses, and dropped connections at a chosen step.
 */
export class FaultInjector {
  constructor(
    private readonly faults: FaultOptions,
    private readonly random: () => number = Math.random,
  ) {}

  get active(): boolean {
    const f = this.faults;
    return (
      f.mail !== undefined ||
      f.rcpt !== undefined ||
      f.auth !== undefined ||
      f.data !== undefined ||
      f.dropAt !== undefined
    );
  }

  /** A verb filter that refuses MAIL / RCPT / AUTH as configured. */
  filter(command: Command, _session: SessionInfo): Reply | undefined {
    const code =
      command.verb === 'MAIL'
        ? this.faults.mail
        : command.verb === 'RCPT'
          ? this.faults.rcpt
          : command.verb === 'AUTH'
            ? this.faults.auth
            : undefined;
    if (code === undefined || !this.applies([addressIn(command.args)])) return undefined;
    return injected(code);
  }

  /** The reply that replaces the acceptance of a complete message, if any. */
  dataFault(addresses: string[]): Reply | undefined {
    const code = this.faults.data;
    if (code === undefined || !this.applies(addresses)) return undefined;
    return injected(code);
  }

  /** Wires the drop-at step into one session. */
  attach(session: SmtpSessionStream): void {
    const step = this.faults.dropAt;
    if (step === undefined) return;
    if (step === 'connect') {
      // Now, before the greeting (queued by attach for the next microtask) can go out.
      if (this.random() < this.faults.rate) session.destroy();
      return;
    }
    const verbs: Record<string, string[]> = {
      ehlo: ['EHLO', 'HELO', 'LHLO'],
      mail: ['MAIL'],
      rcpt: ['RCPT'],
      data: ['DATA', 'BDAT'],
      body: [],
    };
    const verb = verbs[step];
    session.on('command', (command: Command) => {
      if (verb.includes(command.verb) && this.random() < this.faults.rate) session.destroy();
    });
    if (step === 'body') {
      session.on('input', () => {
        const state = session.protocol.state;
        if ((state === 'DATA' || state === 'BDAT') && this.random() < this.faults.rate) session.destroy();
      });
    }
  }

  private applies(addresses: Array<string | undefined>): boolean {
    const list = this.faults.addresses;
    if (list.length > 0 && !addresses.some((a) => a !== undefined && list.includes(a.toLowerCase())))
      return false;
    return this.random() < this.faults.rate;
  }
}

function injected(code: number): Reply {
  const cls = Math.floor(code / 100);
  return new Reply(code, `Injected failure (${code})`, `${cls}.0.0`, 'InjectedFault');
}

function addressIn(args: string): string | undefined {
  const match = /<([^>]*)>/.exec(args) ?? /:\s*(\S+)/.exec(args);
  return match?.[1];
}
