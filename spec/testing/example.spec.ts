/**
 * Testing code that sends mail: the example the README quotes. In a project of your own, import
 * from 'smtp-session-stream/dist/lib/testing' instead.
 */
import * as nodemailer from 'nodemailer';
import { startTestMailServer, type TestMailServer } from '../../lib/testing';

// The code under test: a welcome mail sent through whatever SMTP server it is given.
async function sendWelcome(smtp: { host: string; port: number }, to: string): Promise<void> {
  const transport = nodemailer.createTransport({ host: smtp.host, port: smtp.port });
  await transport.sendMail({ from: 'hello@shop.example', to, subject: 'Welcome!', text: `Hi ${to}!` });
}

describe('sendWelcome', () => {
  let server: TestMailServer;
  beforeAll(async () => {
    server = await startTestMailServer();
  });
  afterAll(() => server.close());
  beforeEach(() => {
    server.clear();
    server.setFaults({});
  });

  it('sends the welcome mail', async () => {
    await sendWelcome(server, 'ann@example.com');

    const mail = await server.waitForMessage((m) => m.subject === 'Welcome!');
    expect(mail.envelope.mailFrom).toBe('hello@shop.example');
    expect(mail.envelope.rcptTo).toEqual(['ann@example.com']);
    expect(mail.headers.get('to')).toEqual(['ann@example.com']);
    expect(mail.text).toContain('Hi ann@example.com!');
  });

  it('passes a temporary failure on to its caller', async () => {
    server.setFaults({ rcpt: 451 }); // every RCPT TO gets "451 Injected failure"

    await expect(sendWelcome(server, 'ann@example.com')).rejects.toMatchObject({ responseCode: 451 });
    expect(server.messages).toHaveLength(0);
  });
});
