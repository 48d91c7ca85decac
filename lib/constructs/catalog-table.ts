import { RemovalPolicy } from 'aws-cdk-lib';
import { AttributeType, BillingMode, ProjectionType, Table, TableEncryption } from 'aws-cdk-lib/aws-dynamodb';
import type { IKey } from 'aws-cdk-lib/aws-kms';
import { Construct } from 'constructs';
import { CATALOG_INDEX_BY_TIME } from '../../core/ports/catalog.ts';

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
    // Sparse: only committed RPs carry gsi1pk. Answers "the RP at or before time T" in one query.
    this.table.addGlobalSecondaryIndex({
      indexName: CATALOG_INDEX_BY_TIME,
      partitionKey: { name: 'gsi1pk', type: AttributeType.STRING },
      sortKey: { name: 'gsi1sk', type: AttributeType.STRING },
      projectionType: ProjectionType.ALL,
    });
  }
}
