/** Synthesizes the CDK app in-process and describes what a deploy needs (template, file assets). */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildApp, DEFAULT_STACK_NAME } from '../../lib/app.ts';
import { projectRoot } from './paths.ts';

export interface FileAsset {
  /** Absolute path of the directory (zip) or file (file) to upload. */
  readonly sourcePath: string;
  readonly packaging: 'zip' | 'file';
  /** Bucket and key with `${AWS::AccountId}`/`${AWS::Region}` placeholders still in them. */
  readonly bucketName: string;
  readonly objectKey: string;
}

export interface SynthResult {
  readonly stackName: string;
  readonly templateFile: string;
  readonly template: CfnTemplate;
  readonly assets: FileAsset[];
}

export interface CfnResource {
  readonly Type: string;
  readonly Properties?: Record<string, unknown>;
  readonly DependsOn?: string | string[];
}

export interface CfnTemplate {
  readonly Resources: Record<string, CfnResource>;
  readonly Outputs?: Record<string, { Value: unknown }>;
  readonly Parameters?: Record<string, unknown>;
}

interface AssetManifest {
  files?: Record<
    string,
    {
      source: { path: string; packaging?: 'zip' | 'file' };
      destinations: Record<string, { bucketName: string; objectKey: string }>;
    }
  >;
}

export function synth(outdir = join(projectRoot, 'cdk.out'), stackName = DEFAULT_STACK_NAME): SynthResult {
  const assembly = buildApp(outdir).synth();
  const stack = assembly.getStackByName(stackName);
  const manifestArtifact = assembly.artifacts.find((a) => a.id === `${stackName}.assets`);
  const manifest: AssetManifest = manifestArtifact
    ? JSON.parse(readFileSync(join(outdir, `${stackName}.assets.json`), 'utf8'))
    : {};
  const assets: FileAsset[] = Object.values(manifest.files ?? {}).flatMap((f) =>
    Object.values(f.destinations).map((d) => ({
      sourcePath: join(outdir, f.source.path),
      packaging: f.source.packaging ?? 'file',
      bucketName: d.bucketName,
      objectKey: d.objectKey,
    })),
  );
  return { stackName, templateFile: stack.templateFullPath, template: stack.template as CfnTemplate, assets };
}
