/**
 * The configuration's JSON Schema, generated from the zod schema (config/schema.ts), for
 * editors (YAML language servers read `# yaml-language-server: $schema=…`).
 *
 *   npm run schema            # writes config/gatehouse.schema.json
 *
 * Each key's `description` is its doc comment in config/ (one text, where the key is
 * declared: the comments that document defaults and units are what an editor shows on hover).
 * A test checks that the committed file matches what the schema generates, and that every
 * section and every limit is described.
 */
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { z } from "zod";
import { configSchema } from "./schema.ts";

const CONFIG_DIR = path.dirname(fileURLToPath(import.meta.url));
export const SCHEMA_FILE = path.join(CONFIG_DIR, "gatehouse.schema.json");

/** The doc comments of one object literal's keys (`z.strictObject({ /** … *\/ key: … })`). */
type KeyDocs = { keys: string[]; docs: Map<string, string> };

/** Every object literal under config/ whose keys carry doc comments, with those comments as plain text. */
export function configDocComments(dir = CONFIG_DIR): KeyDocs[] {
  const out: KeyDocs[] = [];
  const files = (d: string): string[] =>
    readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(path.join(d, e.name)) : e.name.endsWith(".ts") ? [path.join(d, e.name)] : []));
  for (const file of files(dir)) {
    const src = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.Latest, true);
    const visit = (node: ts.Node): void => {
      if (ts.isObjectLiteralExpression(node)) {
        const keys: string[] = [];
        const docs = new Map<string, string>();
        for (const p of node.properties) {
          if (!ts.isPropertyAssignment(p) || !(ts.isIdentifier(p.name) || ts.isStringLiteral(p.name))) continue;
          keys.push(p.name.text);
          const text = ts.getJSDocCommentsAndTags(p).filter(ts.isJSDoc).map((d) => ts.getTextOfJSDocComment(d.comment) ?? "").join(" ");
          const plain = text.replace(/\s+/g, " ").trim();
          if (plain) docs.set(p.name.text, plain);
        }
        if (docs.size > 0) out.push({ keys, docs });
      }
      ts.forEachChild(node, visit);
    };
    visit(src);
  }
  return out;
}

/**
 * The doc comments of each key of a zod object with these keys: from the literals with exactly
 * these keys, else from those whose keys are all among them (`.extend`, spreads). Two literals
 * with the same keys (a TURN listener and the metrics listener) may document a key differently.
 */
function docsFor(shapeKeys: string[], all: KeyDocs[]): Map<string, string[]> {
  const want = new Set(shapeKeys);
  const same = all.filter((l) => l.keys.length === want.size && l.keys.every((k) => want.has(k)));
  const from = same.length > 0 ? same : all.filter((l) => l.keys.length >= 2 && l.keys.every((k) => want.has(k)));
  const docs = new Map<string, string[]>();
  for (const l of from) for (const [k, d] of l.docs) if (!docs.get(k)?.includes(d)) docs.set(k, [...(docs.get(k) ?? []), d]);
  return docs;
}

/** Of several texts for one key, the one that names this key's default (or names none when it has none). */
function pick(texts: string[], node: { default?: unknown }): string {
  if (texts.length === 1) return texts[0]!;
  const named = (t: string) => /\bDefault\b/.test(t);
  const fits = node.default === undefined ? texts.filter((t) => !named(t)) : texts.filter((t) => t.includes(`Default ${String(node.default)}`));
  return fits[0] ?? texts[0]!;
}

/** The schema of what may be written in a configuration file (defaults are optional there). */
export function configJsonSchema(): Record<string, unknown> {
  const comments = configDocComments();
  // Refinements (cross-field checks) have no JSON Schema form: the gateway still checks them at start.
  const schema = z.toJSONSchema(configSchema, {
    io: "input",
    unrepresentable: "any",
    override: ({ zodSchema, jsonSchema }) => {
      const def = (zodSchema as { _zod: { def: { type: string; shape?: Record<string, unknown> } } })._zod.def;
      if (def.type !== "object" || !def.shape || !jsonSchema.properties) return;
      for (const [key, texts] of docsFor(Object.keys(def.shape), comments)) {
        const prop = jsonSchema.properties[key];
        if (prop && typeof prop === "object" && prop.description === undefined) prop.description = pick(texts, prop);
      }
    },
  }) as Record<string, unknown>;
  return { ...schema, $id: "https://gatehouse.invalid/schema/config.json", title: "Gatehouse configuration" };
}

export function renderConfigJsonSchema(): string {
  return JSON.stringify(configJsonSchema(), null, 2) + "\n";
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  writeFileSync(SCHEMA_FILE, renderConfigJsonSchema());
  process.stdout.write(`wrote ${path.relative(process.cwd(), SCHEMA_FILE)}\n`);
}
