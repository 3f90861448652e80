/**
 * The configuration's JSON Schema, generated from the zod schema (config/schema.ts), for
 * editors (YAML language servers read `# yaml-language-server: $schema=…`).
 *
 *   npm run schema            # writes config/gatehouse.schema.json
 *
 * A test checks that the committed file matches what the schema generates.
 */
import { writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { configSchema } from "./schema.ts";

export const SCHEMA_FILE = path.join(path.dirname(fileURLToPath(import.meta.url)), "gatehouse.schema.json");

/** The schema of what may be written in a configuration file (defaults are optional there). */
export function configJsonSchema(): Record<string, unknown> {
  // Refinements (cross-field checks) have no JSON Schema form: the gateway still checks them at start.
  const schema = z.toJSONSchema(configSchema, { io: "input", unrepresentable: "any" }) as Record<string, unknown>;
  return { ...schema, $id: "https://gatehouse.invalid/schema/config.json", title: "Gatehouse configuration" };
}

export function renderConfigJsonSchema(): string {
  return JSON.stringify(configJsonSchema(), null, 2) + "\n";
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  writeFileSync(SCHEMA_FILE, renderConfigJsonSchema());
  process.stdout.write(`wrote ${path.relative(process.cwd(), SCHEMA_FILE)}\n`);
}
