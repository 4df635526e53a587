/** An error the infra scripts report to the user as one clear line (no stack), then exit non-zero. */
export class InfraError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'InfraError';
  }
}
