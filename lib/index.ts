/**
 * smtp-session-stream: build SMTP servers out of streams.
 * - `Protocol` (lib/protocol): the sans-I/O SMTP state machine.
 * - `SmtpSessionStream` (lib/stream): the Duplex around it, with STARTTLS.
 * - `SmtpServer` (lib/server): a net.Server that pipes each connection through a session.
 */
export * from './protocol';
export * from './stream';
export * from './server';
export { createSelfSignedCertificate } from './tls/self-signed';
export type { SelfSignedOptions, SelfSignedCertificate } from './tls/self-signed';
export * from './record';
