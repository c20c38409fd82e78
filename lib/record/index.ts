export {
  TRANSCRIPT_HEADER,
  TRANSCRIPT_VERSION,
  escapeBytes,
  unescapeBytes,
  formatRecord,
  formatHeader,
  formatMetadataLine,
  formatTranscript,
  formatTlsPayload,
  parseTlsPayload,
  parseTranscript,
  type RecordDirection,
  type Transcript,
  type TranscriptRecord,
} from './transcript';
export {
  FILE_HIGH_WATER_MARK,
  MAX_PENDING,
  SessionRecorder,
  recordSession,
  recordToFile,
  type ProxyInfo,
  type RecordableSession,
  type RecorderOptions,
  type RecordToFileResult,
  type SecureInfo,
  type TranscriptSink,
} from './recorder';
export {
  replayTranscript,
  type ReplayCredentials,
  type ReplayDifference,
  type ReplayOptions,
  type ReplayReport,
  type ReplaySkip,
} from './replay';
export { REPLAY_HELP, REPLAY_USAGE, runReplayCli } from './replay-cli';
