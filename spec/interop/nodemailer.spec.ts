/**
 * nodemailer against SmtpServer over loopback. Messages are built once with nodemailer's
 * streamTransport (CRLF line endings) and sent as `raw` with an explicit envelope, so the stored
 * text can be compared byte for byte with what nodemailer generated.
 */
import { randomBytes } from 'node:crypto';
import nodemailer, { type SendMailOptions } from 'nodemailer';
import { SmtpServer, type SmtpServerOptions } from '../../lib/server/server';
import type { AuthRequest } from '../../lib/stream/events';
import type { SmtpSessionStream } from '../../lib/stream/session-stream';
import { HOST, cleanup, store, track, type StoredMessage, tlsOptions } from '../stream/helpers';

const TIMEOUTS = { connectionTimeout: 3000, greetingTimeout: 3000, socketTimeout: 5000 };

afterEach(cleanup);

interface Harness {
  server: SmtpServer;
  port: number;
  stored: StoredMessage[];
  sessions: SmtpSessionStream[];
  auth: AuthRequest[];
}

async function startServer(options: SmtpServerOptions = {}): Promise<Harness> {
  const stored: StoredMessage[] = [];
  const sessions: SmtpSessionStream[] = [];
  const auth: AuthRequest[] = [];
  const server = new SmtpServer({ hostname: HOST, ...options }, (session) => {
    sessions.push(session);
    store(session, stored);
    if (options.tls !== undefined) {
      session.on('auth', (request: AuthRequest) => {
        auth.push(request);
        if (request.validatePassword('correct horse')) request.accept();
        else request.reject();
      });
    }
  });
  const { port } = await server.start(0);
  track(() => server.close());
  return { server, port, stored, sessions, auth };
}

/** The exact bytes nodemailer generates for `mail` (CRLF line endings). */
async function compose(mail: SendMailOptions): Promise<Buffer> {
  const transport = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'windows' });
  const info = await transport.sendMail(mail);
  return info.message as Buffer;
}

/** What the server must store for `raw`: the text up to the final CRLF (RFC 5321 §4.1.1.4). */
function expectedText(raw: Buffer): Buffer {
  return raw.subarray(-2).toString() === '\r\n' ? raw : Buffer.concat([raw, Buffer.from('\r\n')]);
}

const attachment = randomBytes(64 * 1024);

function sampleMail(n: number): SendMailOptions {
  return {
    from: 'Sender <sender@a.test>',
    to: ['rcpt@b.test', 'Other <other@b.test>'],
    subject: `Message ${n} with ünïcödé`,
    messageId: `<msg-${n}@a.test>`,
    date: new Date(Date.UTC(2024, 0, 1, 0, 0, n)),
    text: `Hello ${n}\n.leading dot\n..two dots\n.\nend\n`,
    html: `<p>Hello <b>${n}</b></p>`,
    attachments: [{ filename: `blob-${n}.bin`, content: attachment }],
  };
}

describe('nodemailer', () => {
  test('plain SMTP: the text is stored byte for byte, envelope as given', async () => {
    const { port, stored } = await startServer();
    const raw = await compose(sampleMail(1));
    // The text has lines that must be dot-stuffed on the wire, a lone dot among them.
    expect(raw.includes('\r\n.\r\nend\r\n')).toBe(true);
    expect(raw.includes('\r\n..two dots\r\n')).toBe(true);
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port, ignoreTLS: true, ...TIMEOUTS });
    const info = await transport.sendMail({
      envelope: { from: 'bounce@a.test', to: ['rcpt@b.test', 'other@b.test'] },
      raw,
    });
    transport.close();
    expect(info.response).toBe('250 2.0.0 Ok: queued as id-1');
    expect(info.accepted).toEqual(['rcpt@b.test', 'other@b.test']);
    expect(stored).toHaveLength(1);
    expect(stored[0].body.equals(expectedText(raw))).toBe(true);
    expect(stored[0].envelope.mailFrom.address).toBe('bounce@a.test');
    expect(stored[0].envelope.rcptTo.map((r) => r.address)).toEqual(['rcpt@b.test', 'other@b.test']);
    expect(stored[0].session.secure).toBe(false);
  });

  test.each(['PLAIN', 'LOGIN'])('STARTTLS + AUTH %s', async (method) => {
    const { port, stored, auth } = await startServer({ tls: tlsOptions(), requireAuth: true });
    const raw = await compose(sampleMail(2));
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port,
      requireTLS: true,
      tls: { rejectUnauthorized: false },
      auth: { user: 'alice', pass: 'correct horse' },
      authMethod: method,
      ...TIMEOUTS,
    });
    await transport.sendMail({ envelope: { from: 'alice@a.test', to: 'bob@b.test' }, raw });
    transport.close();
    expect(auth.map((a) => [a.method, a.username, a.password])).toEqual([[method, 'alice', 'correct horse']]);
    expect(stored[0].body.equals(expectedText(raw))).toBe(true);
    expect(stored[0].session.secure).toBe(true);
    expect(stored[0].session.user).toBe('alice');
    expect(stored[0].session.tls?.protocol).toMatch(/^TLSv1\.[23]$/);
  });

  test('a wrong password surfaces as EAUTH with 535', async () => {
    const { port, stored } = await startServer({ tls: tlsOptions(), requireAuth: true });
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port,
      requireTLS: true,
      tls: { rejectUnauthorized: false },
      auth: { user: 'alice', pass: 'wrong' },
      ...TIMEOUTS,
    });
    await expect(
      transport.sendMail({ envelope: { from: 'a@a.test', to: 'b@b.test' }, raw: 'Subject: x\r\n\r\nx\r\n' }),
    ).rejects.toMatchObject({ code: 'EAUTH', responseCode: 535 });
    transport.close();
    expect(stored).toHaveLength(0);
  });

  test('a pool of 3 connections sends 60 messages, all stored byte for byte', async () => {
    const { server, port, stored, sessions } = await startServer();
    let concurrent = 0;
    server.on('session', () => {
      concurrent = Math.max(concurrent, server.sessions.size);
    });
    const raws = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        compose({
          from: 'pool@a.test',
          to: `r${i}@b.test`,
          subject: `pooled ${i}`,
          messageId: `<pool-${i}@a.test>`,
          date: new Date(0),
          text: `${i}\n.\n..${'x'.repeat(i * 50)}\n`,
        }),
      ),
    );
    const transport = nodemailer.createTransport({
      pool: true,
      maxConnections: 3,
      host: '127.0.0.1',
      port,
      ignoreTLS: true,
      ...TIMEOUTS,
    });
    const infos = await Promise.all(
      raws.map((raw, i) =>
        transport.sendMail({ envelope: { from: 'pool@a.test', to: `r${i}@b.test` }, raw }),
      ),
    );
    transport.close();
    expect(infos.every((info) => /^250 2\.0\.0 Ok: queued as id-\d+$/.test(info.response))).toBe(true);
    expect(stored).toHaveLength(60);
    expect(sessions.length).toBeGreaterThan(1);
    expect(sessions.length).toBeLessThanOrEqual(3);
    expect(concurrent).toBeLessThanOrEqual(3);
    const byRecipient = new Map(stored.map((m) => [m.envelope.rcptTo[0].address, m.body]));
    raws.forEach((raw, i) => {
      expect(byRecipient.get(`r${i}@b.test`)?.equals(expectedText(raw))).toBe(true);
    });
  });

  test('a message over maxMessageSize is refused with 552; nodemailer reports it', async () => {
    const { port, stored } = await startServer({ maxMessageSize: 4096 });
    const raw = await compose(sampleMail(3)); // ~90 KB
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port, ignoreTLS: true, ...TIMEOUTS });
    await expect(
      transport.sendMail({ envelope: { from: 'a@a.test', to: 'b@b.test' }, raw }),
    ).rejects.toMatchObject({ responseCode: 552 });
    // The session survives the refusal: a small message still goes through.
    const info = await transport.sendMail({
      envelope: { from: 'a@a.test', to: 'b@b.test' },
      raw: 'Subject: small\r\n\r\nsmall\r\n',
    });
    transport.close();
    expect(info.response).toMatch(/^250 /);
    expect(stored.map((m) => m.body.toString())).toEqual(['Subject: small\r\n\r\nsmall\r\n']);
  });

  test('SMTPUTF8 addresses', async () => {
    const { port, stored } = await startServer();
    const raw = await compose({
      from: 'jöran@exämple.test',
      to: 'ünï@bücher.test',
      subject: 'UTF-8 everywhere',
      text: 'grüße',
      messageId: '<utf8@a.test>',
      date: new Date(0),
    });
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port, ignoreTLS: true, ...TIMEOUTS });
    await transport.sendMail({ envelope: { from: 'jöran@exämple.test', to: 'ünï@bücher.test' }, raw });
    transport.close();
    expect(stored).toHaveLength(1);
    expect(stored[0].envelope.smtputf8).toBe(true);
    expect(stored[0].envelope.mailFrom.address).toMatch(/^jöran@/);
    expect(stored[0].envelope.rcptTo[0].address).toMatch(/^ünï@/);
    expect(stored[0].body.equals(expectedText(raw))).toBe(true);
  });
});
