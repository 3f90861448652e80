import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { configJsonSchema, renderConfigJsonSchema, SCHEMA_FILE } from "../../config/json-schema.ts";

type Node = { type?: string; properties?: Record<string, Node>; additionalProperties?: unknown; items?: Node; default?: unknown; description?: string; anyOf?: Node[] } & Record<string, unknown>;

describe("configuration JSON Schema", () => {
  it("is in sync with the zod schema (run `npm run schema` after changing config/)", () => {
    expect(readFileSync(SCHEMA_FILE, "utf8")).toBe(renderConfigJsonSchema());
  });

  it("is strict like the loader, documents defaults, and knows every key of the example configuration", () => {
    const root = configJsonSchema() as Node;
    expect(root.additionalProperties).toBe(false);
    expect(root.properties!.server!.properties!.port!.default).toBe(8080);
    expect(root.properties!.audit!.properties!.backend).toMatchObject({ default: "sqlite" });
    // Every key used in config/example.yaml is described by the schema.
    const example = parseYaml(readFileSync(new URL("../../config/example.yaml", import.meta.url), "utf8")) as Record<string, unknown>;
    const missing: string[] = [];
    const walk = (value: unknown, node: Node | undefined, at: string) => {
      if (!node || value === null || typeof value !== "object") return;
      if (Array.isArray(value)) return value.forEach((v, i) => walk(v, node.items, `${at}[${i}]`));
      for (const [k, v] of Object.entries(value)) {
        const child = node.properties?.[k];
        if (!child) missing.push(`${at}${at ? "." : ""}${k}`);
        else walk(v, child, `${at}${at ? "." : ""}${k}`);
      }
    };
    walk(example, root, "");
    expect(missing).toEqual([]);
  });

  it("describes every section and every limit with the key's doc comment", () => {
    const root = configJsonSchema() as Node;
    const LIMITS = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minItems", "maxItems", "maxLength"];
    const isLimit = (n: Node): boolean => LIMITS.some((l) => l in n) || (n.anyOf ?? []).some(isLimit);
    const undescribed: string[] = [];
    let limits = 0;
    const walk = (node: Node, at: string, top: boolean) => {
      for (const alt of node.anyOf ?? []) walk(alt, at, false);
      if (node.items) walk(node.items, `${at}[]`, false);
      for (const [k, child] of Object.entries(node.properties ?? {})) {
        const p = at ? `${at}.${k}` : k;
        if (isLimit(child)) limits++;
        if (!child.description && (top || isLimit(child))) undescribed.push(p);
        walk(child, p, false);
      }
    };
    walk(root, "", true);
    expect(undescribed).toEqual([]);
    expect(limits).toBeGreaterThan(100);
    const p = root.properties!;
    expect(p.server!.description).toMatch(/front door/);
    expect(p.supervision!.properties!.maxRestarts!.description).toMatch(/^Failures tolerated per component within `windowSeconds`.*Default 10\.$/);
    // Two listeners with the same keys keep their own texts: each names its own default, or none.
    expect(p.metrics!.properties!.listen!.properties!.port!.description).toBe("Port; 0 picks a free port. Default 9464.");
    expect(p.turn!.properties!.udp!.items!.properties!.port!.description).toBe("Port; 0 picks a free port.");
  });
});
