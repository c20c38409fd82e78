import type { Extension } from '../extension';

/** LIMITS, RFC 9422 (opt-in): advertises RCPTMAX when a recipient limit is set. */
export const limits: Extension = {
  name: 'LIMITS',
  ehlo: (protocol) =>
    protocol.maximumRecipients > 0 ? `LIMITS RCPTMAX=${protocol.maximumRecipients}` : undefined,
};
