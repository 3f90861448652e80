/**
 * Preloaded (`--require`) by every process and worker thread of a test run: installs the
 * network guard before any of their own code runs (see net-guard.ts, global-setup.ts).
 */
import { installNetGuard } from "./net-guard.ts";

installNetGuard();
