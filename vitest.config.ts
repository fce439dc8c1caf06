import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Engine tests start real CLI processes; a slow, busy machine needs room.
    testTimeout: 600_000,
    hookTimeout: 600_000,
  },
});
