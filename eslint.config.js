// Lint: typescript-eslint's recommended rules plus the few that guard the packet loops.
import js from "@eslint/js";
import tseslint from "typescript-eslint";
import globals from "globals";

export default tseslint.config(
  { ignores: ["node_modules/**", "web/vendor/**", "coverage/**", ".scratch*/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { ecmaVersion: 2024, sourceType: "module" },
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/consistent-type-imports": "error",
      "no-constant-condition": ["error", { checkLoops: false }],
      "@typescript-eslint/no-floating-promises": "off",
    },
  },
  {
    // werift falls back to a public STUN server unless its peers come from sfu/peer-connection.ts.
    files: ["**/*.ts"],
    ignores: ["sfu/peer-connection.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        { paths: [{ name: "werift", importNames: ["RTCPeerConnection"], allowTypeImports: true, message: "create werift peers with createPeerConnection (sfu/peer-connection.ts): it never contacts a default STUN server" }] },
      ],
    },
  },
  {
    files: ["web/**/*.js"],
    languageOptions: { globals: { ...globals.browser } },
  },
);
