/** One `[Section]` of a systemd unit file: its `Key=Value` lines in order (keys may repeat). */
export interface SystemdSection {
  readonly name: 'Unit' | 'Service' | 'Timer' | 'Install';
  readonly entries: ReadonlyArray<readonly [key: string, value: string]>;
}

/**
 * Renders a systemd unit file (or drop-in) from typed sections.
 *
 * Values are written verbatim; a newline in a value would start a new directive, so it is refused.
 */
export function renderSystemdUnit(sections: readonly SystemdSection[]): string {
  return sections
    .map((section) => {
      const lines = section.entries.map(([key, value]) => {
        if (/[\r\n]/.test(value)) {
          throw new Error(`systemd directive ${key} must be a single line, got ${JSON.stringify(value)}`);
        }
        return `${key}=${value}`;
      });
      return [`[${section.name}]`, ...lines].join('\n');
    })
    .join('\n\n') + '\n';
}
