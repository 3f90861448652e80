/** Sign-in configuration (OpenID Connect, rights). Owned by the auth feature. */
import { z } from "zod";

export const authSection = z
  .strictObject({
    /** `dev` runs the in-process development identity provider (loopback only); `oidc` uses `issuer`. */
    mode: z.enum(["dev", "oidc", "none"]).default("dev"),
  })
  .prefault({});
