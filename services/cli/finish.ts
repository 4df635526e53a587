/** How long a finished command may wait for client libraries to let go before the process exits anyway. */
const lingerMs = 10_000;

/**
 * Ends the process of a finished command with `code`. It exits on its own once nothing is left to run;
 * should a client library keep a handle open (a Kafka consumer wedged after a broker restart keeps its
 * fetch loop and sockets alive past its disconnect), it exits anyway after a short wait, saying what
 * was left. The command's work is done and closed by then: nothing is lost.
 */
export function finish(code: number): void {
  process.exitCode = code;
  setTimeout(() => {
    console.error(
      `lightmem: exiting with handles still open (${process.getActiveResourcesInfo().join(', ')})`,
    );
    process.exit(code);
  }, lingerMs).unref();
}
