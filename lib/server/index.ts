export { SmtpServer } from './server';
export type { SmtpServerOptions } from './server';
