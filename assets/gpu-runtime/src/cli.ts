#!/usr/bin/env node
/**
 * egpu: the cdk-enclave-gpu runtime's command line.
 */
import { ARTEFACT_COMMANDS } from './cli/artefact-command';
import { ATTEST_COMMANDS } from './cli/attest-command';
import { Command, dispatch } from './cli/command';
import { CONTEXT_COMMANDS } from './cli/context-command';
import { EGP_COMMANDS } from './cli/egp-command';
import { SGS_COMMANDS } from './cli/sgs-command';

/** Every command, by group. */
export const COMMANDS: Command[] = [...ATTEST_COMMANDS, ...ARTEFACT_COMMANDS, ...SGS_COMMANDS, ...CONTEXT_COMMANDS, ...EGP_COMMANDS];

if (require.main === module) {
  dispatch(COMMANDS, process.argv.slice(2)).then(
    (status) => { process.exitCode = status; },
    (error: unknown) => {
      process.stderr.write(`egpu: internal error: ${error instanceof Error ? error.stack : String(error)}\n`);
      process.exitCode = 70;
    },
  );
}
