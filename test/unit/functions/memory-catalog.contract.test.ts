import { catalogContract } from '../../contract/catalog.contract.ts';
import { MemoryCatalog } from '../../support/fakes/memory-catalog.ts';

catalogContract('in-memory fake', async () => new MemoryCatalog());
