/** SIP intercom configuration. Owned by the SIP feature. */
import { z } from "zod";

export const sipSection = z
  .strictObject({
    /** Run the SIP registrar/UAS. Default false. */
    enabled: z.boolean().default(false),
  })
  .prefault({});
