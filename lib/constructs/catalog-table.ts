import { RemovalPolicy } from 'aws-cdk-lib';
import { AttributeType, BillingMode, Table, TableEncryption } from 'aws-cdk-lib/aws-dynamodb';
import type { IKey } from 'aws-cdk-lib/aws-kms';
import { Construct } from 'constructs';

export interface CatalogTableProps {
  /** Key that encrypts the table at rest. */
  readonly encryptionKey: IKey;
  /**
   * What happens to the table when the stack is deleted.
   * @default - RemovalPolicy.RETAIN: the catalog outlives the stack
   */
  readonly removalPolicy?: RemovalPolicy;
}

/**
 * The catalog: one on-demand table with string keys `pk`/`sk` (schema and access patterns in
 * docs/FORMAT.md), point-in-time recovery on. A plain `Table`, since `TableV2` synthesizes a
 * custom resource.
 */
export class CatalogTable extends Construct {
  readonly table: Table;

  constructor(scope: Construct, id: string, props: CatalogTableProps) {
    super(scope, id);
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    this.table = new Table(this, 'Table', {
      partitionKey: { name: 'pk', type: AttributeType.STRING },
      sortKey: { name: 'sk', type: AttributeType.STRING },
      billingMode: BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      encryption: TableEncryption.CUSTOMER_MANAGED,
      encryptionKey: props.encryptionKey,
      deletionProtection: removalPolicy === RemovalPolicy.RETAIN,
      removalPolicy,
    });
  }
}
