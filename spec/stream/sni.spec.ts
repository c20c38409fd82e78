import * as net from 'node:net';
import * as tls from 'node:tls';
import { SmtpServer } from '../../lib/server/server';
import { createSelfSignedCertificate } from '../../lib/tls/self-signed';

/** TLS certificates per server name (SNI) for STARTTLS: the `tls.SNICallback` option picks them. */
describe('STARTTLS with a certificate per server name (SNI)', () => {
  const alpha = createSelfSignedCertificate({ commonName: 'alpha.test', altNames: ['alpha.test'] });
  const beta = createSelfSignedCertificate({ commonName: 'beta.test', altNames: ['beta.test'] });
  const contexts = new Map([
    ['alpha.test', tls.createSecureContext({ key: alpha.key, cert: alpha.cert })],
    ['beta.test', tls.createSecureContext({ key: beta.key, cert: beta.cert })],
  ]);
  let server: SmtpServer;
  let port: number;
  const servernames: Array<string | null | undefined> = [];

  beforeAll(async () => {
    server = new SmtpServer(
      {
        hostname: 'mx.test',
        tls: {
          key: alpha.key,
          cert: alpha.cert,
          SNICallback: (name, callback) => callback(null, contexts.get(name) ?? contexts.get('alpha.test')),
        },
      },
      (session) => session.on('secure', (info) => servernames.push(info.servername)),
    );
    ({ port } = await server.start(0));
  });
  afterAll(() => server.close());

  /** Plain session up to the 220 of STARTTLS, then a TLS handshake naming `servername`. */
  async function upgrade(
    servername: string,
    ca: string,
  ): Promise<{ cn: unknown; authorized: boolean; ehlo: string }> {
    const socket = net.connect(port, '127.0.0.1');
    socket.setEncoding('latin1');
    let text = '';
    const until = (pattern: RegExp) =>
      new Promise<void>((resolve) => {
        const check = () => (pattern.test(text) ? (socket.off('data', onData), resolve()) : undefined);
        const onData = (chunk: string) => ((text += chunk), check());
        socket.on('data', onData);
        check();
      });
    await until(/^220 .*\r\n/);
    socket.write('EHLO client.test\r\nSTARTTLS\r\n');
    await until(/\r\n220 2\.0\.0 Ready to start TLS\r\n/);
    socket.removeAllListeners('data');
    const secure = tls.connect({ socket, servername, ca });
    await new Promise((resolve, reject) => secure.once('secureConnect', resolve).once('error', reject));
    const cn = secure.getPeerCertificate().subject?.CN;
    let after = '';
    secure.setEncoding('latin1');
    secure.on('data', (chunk: string) => (after += chunk));
    secure.write('EHLO client.test\r\n');
    while (!/\r\n250 [^\r]*\r\n$/.test(after)) await new Promise((r) => setTimeout(r, 10));
    secure.end('QUIT\r\n');
    await new Promise((resolve) => secure.once('close', resolve));
    return { cn, authorized: secure.authorized, ehlo: after };
  }

  it('serves the certificate of the name the client asked for', async () => {
    const b = await upgrade('beta.test', beta.cert);
    expect(b).toMatchObject({ cn: 'beta.test', authorized: true });
    const a = await upgrade('alpha.test', alpha.cert);
    expect(a).toMatchObject({ cn: 'alpha.test', authorized: true });
    expect(servernames).toEqual(['beta.test', 'alpha.test']);
    // After the upgrade STARTTLS is no longer offered.
    expect(b.ehlo).not.toContain('STARTTLS');
  });
});
