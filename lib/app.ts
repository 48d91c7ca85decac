/** CDK app entry (`cdk synth`, `cdk deploy`); also used in-process by the local deploy harness. */
import { App } from 'aws-cdk-lib';
import { OffsiteStack } from './offsite-stack.ts';

export const DEFAULT_STACK_NAME = 'CdpOffsite';

export function buildApp(outdir?: string): App {
  const app = new App(outdir ? { outdir } : {});
  new OffsiteStack(app, DEFAULT_STACK_NAME, {
    env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
  });
  return app;
}

if (import.meta.main) buildApp().synth();
