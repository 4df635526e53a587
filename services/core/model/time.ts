/** Formats an instant in the zone offset it was given in, e.g. 2023-05-08T13:56:00+02:00. */
export function formatInstant(epochMs: number, zoneOffset: string): string {
  const match = /^([+-])(\d{2}):(\d{2})$/.exec(zoneOffset);
  if (match === null || zoneOffset === '+00:00') return new Date(epochMs).toISOString().replace('.000Z', 'Z');
  const sign = match[1] === '-' ? -1 : 1;
  const offsetMs = sign * (Number(match[2]) * 60 + Number(match[3])) * 60_000;
  const local = new Date(epochMs + offsetMs).toISOString().replace(/(\.000)?Z$/, '');
  return `${local}${zoneOffset}`;
}

const weekdays = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'] as const;

/** The weekday (Mon…Sun) of an instant in the zone offset it was given in. */
export function weekdayIn(epochMs: number, zoneOffset: string): string {
  const match = /^([+-])(\d{2}):(\d{2})$/.exec(zoneOffset);
  const offsetMs =
    match === null ? 0 : (match[1] === '-' ? -1 : 1) * (Number(match[2]) * 60 + Number(match[3])) * 60_000;
  return weekdays[new Date(epochMs + offsetMs).getUTCDay()] ?? 'Sun';
}
