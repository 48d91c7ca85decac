/**
 * `cdp-agent rpo --safe s3://bucket/safes/<id> --target 15m --table <CatalogTableName>`: sets a
 * safe's RPO target in the offsite catalog (the RPO monitor alarms when the safe's lag passes it).
 * Needs dynamodb:UpdateItem on the catalog table; the DynamoDB client is loaded only then (agent/clients.ts).
 */
import { CdpError } from '#core/errors.ts';
import { openCatalog } from '../clients.ts';
import { parseDuration } from '../run/config.ts';
import { openSafeLocation } from '../safe-location.ts';

export async function rpoCommand(o: {
  safe: string;
  target: string;
  table?: string;
  json?: boolean;
}): Promise<number> {
  const table = o.table ?? process.env.CDP_CATALOG_TABLE;
  if (!table)
    throw new CdpError(
      'E_USAGE',
      '--table (the stack output CatalogTableName) or $CDP_CATALOG_TABLE is needed',
    );
  const seconds = Math.round(parseDuration(o.target) / 1000);
  if (seconds < 60)
    throw new CdpError('E_USAGE', `--target ${o.target}: the monitor measures every minute; use 1m or more`);
  const { safe } = await openSafeLocation(o.safe);
  const catalog = await openCatalog(table);
  await catalog.setRpoTarget(safe, seconds, new Date().toISOString());
  const s = await catalog.getSafe(safe);
  if (o.json) console.log(JSON.stringify(s, null, 1));
  else
    console.log(`safe ${safe}: RPO target ${seconds} s (newest committed RP ${s?.newestRp ?? 'none yet'})`);
  return 0;
}
