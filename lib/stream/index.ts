export { SmtpSessionStream, STREAM_DEFAULTS } from './session-stream';
export type {
  AttachableConnection,
  SmtpSessionOptions,
  ProxyProtocolOptions,
  SmtpSessionEvents,
} from './session-stream';
export { SmtpMessage, AuthRequest } from './events';
export { MessageBodyStream } from './body-stream';
