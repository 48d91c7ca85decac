/**
 * The S3 "Object Created" event as EventBridge delivers it (to SQS, to Lambda).
 * https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html
 */
import { z } from 'zod';
import { BadInputError } from './errors.ts';

export const objectCreatedEventSchema = z.object({
  source: z.literal('aws.s3'),
  'detail-type': z.literal('Object Created'),
  time: z.string(),
  detail: z.object({
    bucket: z.object({ name: z.string().min(1) }),
    object: z.object({
      key: z.string().min(1),
      size: z.number().int().nonnegative().optional(),
      etag: z.string().optional(),
      /** moto spells it eTag. */
      eTag: z.string().optional(),
    }),
  }),
});

export type ObjectCreatedEvent = z.infer<typeof objectCreatedEventSchema>;

/** Parses an SQS message body holding one EventBridge S3 event; throws BadInputError naming the fault. */
export function parseObjectCreated(body: string, where: string): ObjectCreatedEvent {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch (e) {
    throw new BadInputError(where, 'message body is not JSON', {}, { cause: e });
  }
  const r = objectCreatedEventSchema.safeParse(json);
  if (!r.success) {
    const first = r.error.issues[0];
    throw new BadInputError(
      where,
      `not an S3 Object Created event (${first?.path.join('.')}: ${first?.message})`,
    );
  }
  return r.data;
}
