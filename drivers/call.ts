/** Every driver call takes an AbortSignal and passes it on to execa and HTTP calls. */
export interface CallOpts {
  signal: AbortSignal;
}
