/**
 * Every driver call takes an AbortSignal and passes it on to execa and HTTP
 * calls. The signal is the call's own while it runs: once the call settles,
 * the driver keeps no listener on it and ties nothing that lives on (a VMM
 * process, a poller) to it, because the runtime may hand it to a later call.
 */
export interface CallOpts {
  signal: AbortSignal;
}
