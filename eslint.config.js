// ESLint flat config (`npm run lint`): the browser code in static/js, ES modules loaded with
// <script type="module">, and its node unit tests (`npm test`).
import js from "@eslint/js";
import globals from "globals";

const WORKLET = "static/js/voice/capture-worklet.js";
const TESTS = "static/js/tests/**/*.js";

export default [
  js.configs.recommended,
  {
    languageOptions: { ecmaVersion: "latest", sourceType: "module" },
    linterOptions: { reportUnusedDisableDirectives: "error" },
  },
  {
    files: ["static/js/**/*.js"],
    ignores: [WORKLET, TESTS],
    languageOptions: { globals: { ...globals.browser } },
  },
  {
    // The microphone worklet runs in the AudioWorkletGlobalScope, not in a window.
    files: [WORKLET],
    languageOptions: { globals: { ...globals.audioWorklet } },
  },
  {
    files: [TESTS, "eslint.config.js"],
    languageOptions: { globals: { ...globals.node } },
  },
];
