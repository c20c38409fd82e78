import type { Extension } from '../extension';
import { reply } from '../replies';
import { State } from '../state';

const BDAT_ARGS = /^(\d{1,15})(?:[ \t]+(LAST))?$/i;

/**
 * CHUNKING, RFC 3030: `BDAT <size> [LAST]` carries exactly `size` octets with no dot handling.
 * The octets are claimed before any check (`frame`), so a refused BDAT still consumes its chunk.
 */
export const chunking: Extension = {
  name: 'CHUNKING',
  ehlo: () => 'CHUNKING',
  verbs: {
    BDAT: {
      from: [State.Rcpt, State.Bdat],
      frame(command, protocol) {
        const match = BDAT_ARGS.exec(command.args);
        if (match) protocol.expectChunk(Number(match[1]), match[2] !== undefined);
      },
      handle(command, protocol) {
        if (!BDAT_ARGS.test(command.args)) {
          // No size, so no chunk to skip; like any refused BDAT it fails the transaction (§2).
          protocol.abandonTransaction();
          return reply('SyntaxError', 'BDAT size [LAST]');
        }
        const noRecipients = protocol.noRecipientsRefusal();
        if (noRecipients !== undefined) return noRecipients; // as DATA answers (the chunk is skipped)
        protocol.acceptChunk();
        return null;
      },
    },
  },
};
