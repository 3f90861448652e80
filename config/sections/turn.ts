/** TURN relay configuration. Owned by the TURN feature. */
import { z } from "zod";

export const turnSection = z
  .strictObject({
    /** Run the embedded TURN server. Default false until configured. */
    enabled: z.boolean().default(false),
  })
  .prefault({});
